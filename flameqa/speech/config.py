"""Configuration of the speech stage: VAD → ASR with word times → diarization → turns.

Times are seconds, rates Hz. The tree mirrors the objects: ``SpeechConfig.vad`` configures
:class:`flameqa.speech.vad.SileroVad`, ``.asr`` the ASR backends, ``.diarization`` the diarizers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from flameqa.configbase import Config


class VadConfig(Config):
    threshold: float = 0.35
    """Silero speech probability above which a 32 ms frame is speech (0-1). Below silero's 0.5
    default: far-field and quiet conversational speech is missed at 0.5 (AMI: 7 s of 45 s)."""
    min_speech_s: float = 0.25
    """Speech runs shorter than this are dropped (clicks, breaths)."""
    min_silence_s: float = 0.3
    """A pause must last this long to end a speech segment."""
    pad_s: float = 0.1
    """Each speech segment is widened by this much on both sides (onsets are soft)."""
    max_segment_s: float = 30.0
    """Longer segments are split at their quietest point (bounds the diarization windows' span)."""
    block_s: float = 600.0
    """Audio is read and scanned this many seconds at a time (memory stays bounded for hour-long files)."""
    onnx: bool = False
    """Use silero's ONNX graph (onnxruntime) instead of its TorchScript one."""


class AsrConfig(Config):
    compute_type: Literal["auto", "int8", "int8_float32", "int8_float16", "int16", "float16", "float32"] = "auto"
    """CTranslate2 precision; auto = int8 on CPU, float16 on CUDA."""
    beam_size: int = 5
    temperature: tuple[Annotated[float, Field(ge=0.0)], ...] = Field((0.0, 0.2, 0.4, 0.6, 0.8, 1.0), min_length=1)
    """Decoding temperatures Whisper tries in turn on a 30-s window: 0 is beam search; where its
    text fails the compression-ratio or log-probability check, the next temperature samples
    ``best_of`` candidates (faster-whisper's default list). ``(0.0,)`` never samples. The
    faster-whisper backend only (whisperx decodes at the first temperature)."""
    seed: int | None = 0
    """Seed of CTranslate2's sampling. Unseeded, rebuilding the same input transcribed sampled
    windows differently each time (3 runs of a 3-minute video: 279, 241 and 270 words). CTranslate2
    seeds a thread's generator once, at its first sample, so the model is reloaded before the next
    transcription (a window of up to ``window_s``, or a clip) whenever one drew samples: each
    transcription starts from the seed, and a video's words do not depend on what its process
    transcribed before (a resumed run or another worker count writes the same words). A reload
    takes ~0.2 s for tiny.en, seconds for large-v3; ``temperature=[0.0]`` never needs one. None:
    unseeded, never reloaded."""
    language: str | None = "en"
    """Spoken language (ISO code); None detects it per window (multilingual models only)."""
    cpu_threads: int = 0
    """Threads for CTranslate2 on CPU; 0 = its default (all cores, at most 4)."""
    window_s: float = 300.0
    """Speech is transcribed in windows of at most this span, cut in silences (bounded memory)."""
    chunk_pad_s: float = 0.9
    """Silence kept around each VAD segment when speech chunks are concatenated for Whisper. Whisper
    reads a cut close to speech as part of a word: at 0.4-0.8 s, base heard GRID's "f two now" as
    "f tuner" (3 of its 11 errors on jfk+GRID+cards). Where Whisper's input starts is a chance
    factor on single utterances, not a monotone one: at 1.0-1.2 s tiny.en garbled one espeak
    sentence of tests/speech/test_long.py ("sentence number two" → "incentive somewhere"), at
    0.9 s both read right. Measured over a handful of utterances: treat as a coin, not a law."""
    chunk_merge_gap_s: float = 2.0
    """VAD segments closer than this are sent as one chunk (Whisper keeps the context)."""
    vad_filter: bool = True
    """Transcribe only the VAD speech chunks (False: whole windows, silence included)."""
    condition_on_previous_text: bool = False
    """Prompt each 30 s Whisper window with the previous one's text. Off because a misheard window
    then seeds the next: tiny.en wrote a sentence twice on the 2 min espeak dialogue of
    ``bench/speech_rtf.py`` (12 inserted words, WER 11.8 % → 15.7 %; off: 11.8 %)."""
    initial_prompt: str | None = None
    batch_size: int = 8
    """Batch size of the whisperx backend."""
    whisperx_align_model: str | None = None
    """wav2vec2 alignment model for whisperx (a local folder or hub name); None = whisperx's default for the language."""
    whisperx_vad_method: Literal["pyannote", "silero"] = "pyannote"
    """whisperx's own VAD (its silero option loads through torch.hub: needs the network once)."""


class DiarizationConfig(Config):
    window_s: float = 1.0
    """Length of the audio window each speaker embedding (d-vector) sees. Longer windows give
    steadier d-vectors but blur speaker changes (AMI: DER 16 % at 1.0 s, 23 % at 1.5 s, 53 % at 2 s)."""
    hop_s: float = 0.25
    """Step between embedding windows: the time resolution of speaker changes."""
    clustering: Literal["spectral", "agglomerative"] = "spectral"
    min_speakers: int = 1
    max_speakers: int = 8
    distinct_voice_similarity: float = 0.75
    """Estimating the count: k clusters are accepted outright while every pair's mean d-vectors are
    less alike than this (cosine). Measured: two espeak voices 0.68, two GRID talkers 0.50-0.68, but
    one real speaker split in two 0.80-0.91 and AMI's two far-field speakers 0.86 — above this
    threshold only :attr:`turn_taking_similarity` with turn-taking can still find two speakers."""
    turn_taking_similarity: float = 0.92
    """Two clusters more alike than ``distinct_voice_similarity`` but at most this alike count as two
    speakers when they take turns (see ``min_speaker_changes``). Above it the halves are as alike as
    one synthetic voice's sentences (espeak, one voice split in two: 0.94). Set it to
    ``distinct_voice_similarity`` to turn turn-taking evidence off: a monologue whose register
    changes back and forth (or the same recording played twice: jfk twice counts 2) is then never
    split, but similar voices in a conversation (AMI) count as one."""
    min_speaker_changes: int = 3
    """Turn-taking: the voice must change at least this often (3 = A B A B: both voices come back).
    One voice split by drift or a change of register measured 1-2 changes (jfk, cards, GRID, an AMI
    monologue); AMI's two 30 s conversations 6 each, their 15-20 s crops 3-7 (1 where a crop holds
    a single hand-over, which then counts as one speaker unless the voices differ clearly)."""
    turn_taking_min_run_s: float = 0.75
    """Turn-taking: only runs of one voice lasting at least this long (seconds, pauses inside included)
    count as turns; shorter ones are blips of the clustering (the d-vector window is 1 s)."""
    pruning: float = 0.5
    """Affinity refinement for spectral clustering: per row, similarities below this quantile are damped."""
    switch_penalty: float = 0.3
    """Viterbi re-segmentation: cost of changing speaker between adjacent windows (cosine units)."""
    resegment_iterations: int = 3
    max_cluster_windows: int = 1500
    """At most this many windows are clustered (evenly subsampled); the rest join the nearest centroid."""
    merge_gap_s: float = 2.0
    """Same-speaker speech separated by less than this is one turn."""
    max_interjection_s: float = 1.0
    """A turn of another speaker at most this long inside a pause-free run of one speaker is kept as an
    overlap (both turns span it): backchannels ("yeah", "mm") rarely stop the main speaker."""
    min_turn_s: float = 0.2
    """Shorter turns are absorbed by their neighbour."""
    pyannote_pipeline: str = "pyannote/speaker-diarization-3.1"
    """pyannote.audio pipeline: a local folder/config.yaml or a hub name (needs a token and the network)."""
    hf_token_env: str = "HF_TOKEN"
    """Environment variable holding the Hugging Face token for gated pyannote models."""


class SpeechConfig(Config):
    asr_backend: Literal["faster-whisper", "whisperx"] = "faster-whisper"
    """ASR engine; whisperx is an optional extra (it pins its own torch)."""
    asr_model: str = "whisper-tiny.en"
    """A local CTranslate2 model folder, a model-cache name, or (with allow_download) a hub name."""
    diarization_backend: Literal["embeddings", "pyannote", "none"] = "embeddings"
    """embeddings: VAD + resemblyzer d-vectors + clustering; pyannote: optional extra; none: one speaker."""
    num_speakers: int | None = None
    """Known number of speakers per clip (per run of shots with ``span_shots``); None estimates it."""
    span_shots: bool = True
    """Transcribe and diarize a video's adjacent shots as one recording: Whisper's 30-s windows are
    filled instead of padded (a 3-s shot alone costs a whole window), sentences across a cut stay
    whole, and speaker labels are shared by the video's shots. False: every shot alone."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    allow_download: bool = False
    """Let model names resolve on the Hugging Face hub (never in tests or the default run)."""
    vad: VadConfig = VadConfig()
    asr: AsrConfig = AsrConfig()
    diarization: DiarizationConfig = DiarizationConfig()
