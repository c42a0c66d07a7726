"""Speech recognition with word timestamps: faster-whisper (default) and a whisperx adapter.

Both backends take 16 kHz mono float32 audio plus the VAD speech spans of it and return segments
(sentence-like, punctuated) whose words carry start/end times in seconds from the audio's first
sample. Long recordings are cut into windows in silences by :func:`plan_windows`; each window is
transcribed on its own, so memory depends on the window, not on the file.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from flameqa.speech.audio import SAMPLE_RATE
from flameqa.speech.config import AsrConfig, SpeechConfig
from flameqa.speech.vad import Span, merge_spans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word:
    word: str
    """As the recognizer wrote it, punctuation attached, no surrounding spaces."""
    start_s: float
    end_s: float
    prob: float


@dataclass(frozen=True)
class AsrSegment:
    text: str
    """The segment's text with punctuation."""
    start_s: float
    end_s: float
    words: tuple[Word, ...] = field(default_factory=tuple)

    def shifted(self, dt: float) -> "AsrSegment":
        return replace(
            self,
            start_s=self.start_s + dt,
            end_s=self.end_s + dt,
            words=tuple(replace(w, start_s=w.start_s + dt, end_s=w.end_s + dt) for w in self.words),
        )


class AsrBackend(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, speech: Sequence[Span]) -> list[AsrSegment]:
        """Segments of ``audio`` (16 kHz mono), restricted to ``speech`` spans (seconds from its start)."""
        ...


class BackendUnavailable(ImportError):
    """An optional backend whose package is not installed; the message says how to get it."""


# ---------------------------------------------------------------------------------------------
# device / model resolution


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when CTranslate2 or torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    try:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() > 0:
            return "cuda"
    except ImportError:
        pass
    return "cpu"


def compute_type_for(cfg: AsrConfig, device: str) -> str:
    if cfg.compute_type != "auto":
        return cfg.compute_type
    return "float16" if device.startswith("cuda") else "int8"


def resolve_whisper_model(spec: str, allow_download: bool = False) -> Path:
    """A CTranslate2 Whisper folder from a path, the model cache, or (allowed only) the hub."""
    from flameqa.models import resolve_model

    def fetch(name: str) -> Path:
        from faster_whisper.utils import download_model

        return Path(download_model(name))

    return resolve_model(spec, kind="whisper", hub_fetch=fetch, allow_download=allow_download)


# ---------------------------------------------------------------------------------------------
# windows and chunks


def plan_windows(
    speech: Sequence[Span], window_s: float, start_s: float, end_s: float, margin_s: float = 1.0
) -> list[tuple[float, float, list[Span]]]:
    """Group speech spans into windows ``(w0, w1, spans)`` of at most ``window_s`` seconds.

    Windows start and end in silence (between spans, with a small margin), so no span is cut; a
    single span longer than ``window_s`` gets a window of its own. Each window is widened into the
    surrounding silence by up to ``margin_s`` (keep it ≥ ``AsrConfig.chunk_pad_s``, or the chunk
    padding has no audio to take): the whole margin at the ends of ``[start_s, end_s]``, half the
    gap between two windows (they share it).
    """
    out: list[tuple[float, float, list[Span]]] = []
    cur: list[Span] = []
    for s, e in sorted(speech):
        if cur and e - cur[0][0] > window_s:
            out.append((cur[0][0], cur[-1][1], cur))
            cur = []
        cur.append((s, e))
    if cur:
        out.append((cur[0][0], cur[-1][1], cur))
    res = []
    for i, (w0, w1, sp) in enumerate(out):
        # halving the silence before the first / after the last window (nobody shares it) cut
        # Whisper's lead-in on short clips: cards 001 started 50 ms before its first word
        # ("ten of close"), GRID bbaf2n lost its tail ("f two now" → "tuner")
        pre = min(margin_s, (w0 - out[i - 1][1]) / 2) if i else min(margin_s, w0 - start_s)
        post = min(margin_s, (out[i + 1][0] - w1) / 2) if i + 1 < len(out) else min(margin_s, end_s - w1)
        res.append((w0 - max(0.0, pre), w1 + max(0.0, post), sp))
    return res


class _ChunkMap:
    """Maps times in concatenated speech chunks back to the original audio (seconds)."""

    def __init__(self, chunks: Sequence[Span]) -> None:
        self.chunks = list(chunks)
        self.cat_start = np.cumsum([0.0] + [e - s for s, e in self.chunks])[:-1]

    def index(self, t: float) -> int:
        return int(np.clip(np.searchsorted(self.cat_start, t, side="right") - 1, 0, len(self.chunks) - 1))

    def to_orig(self, t: float, i: int) -> float:
        s, e = self.chunks[i]
        return float(min(e, s + max(0.0, t - self.cat_start[i])))


# ---------------------------------------------------------------------------------------------
# faster-whisper


class _SampleWatch:
    """Forwards to a CTranslate2 Whisper model and notes whether a ``generate`` call drew random
    numbers (sampling with top-k other than 1, which faster-whisper's temperature fallback does)."""

    def __init__(self, model) -> None:
        self._model = model
        self.sampled = False

    def generate(self, *args, **kwargs):
        if kwargs.get("sampling_topk", 1) != 1:
            self.sampled = True
        return self._model.generate(*args, **kwargs)

    def __getattr__(self, name: str):
        if name == "_model":  # not set yet (a copy being built): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self._model, name)


class FasterWhisperAsr:
    """faster-whisper (CTranslate2) from a local model folder, word timestamps on."""

    name = "faster-whisper"

    def __init__(self, model: str | os.PathLike, config: AsrConfig | None = None, device: str = "cpu", allow_download: bool = False) -> None:
        self.config = config or AsrConfig()
        self.device = resolve_device(device)
        self.model_path = resolve_whisper_model(str(model), allow_download)
        self.compute_type = compute_type_for(self.config, self.device)
        if self.config.seed is not None:
            import ctranslate2

            # read by each CTranslate2 thread once, when it first samples (see _load)
            ctranslate2.set_random_seed(self.config.seed)
        self.reloads = 0
        """Times the model was reloaded to restart its sampler from the seed."""
        self._load()
        self.multilingual = bool(getattr(self.model.model, "is_multilingual", True))
        log.info("faster-whisper %s on %s (%s)", self.model_path.name, self.device, self.compute_type)

    def _load(self) -> None:
        """(Re)load the model. A fresh CTranslate2 model runs on fresh threads, whose random
        generators start from the seed: reloading is the only way CTranslate2 offers to restart
        them (``set_random_seed`` reaches only threads that have not sampled yet)."""
        from faster_whisper import WhisperModel

        # drop every reference to the old model first (the watch holds its CTranslate2 model):
        # two copies of a large model may not fit on the device
        self.model = self._watch = None
        gc.collect()
        # local_files_only: the folder is resolved above; never let faster-whisper reach the hub
        self.model = WhisperModel(
            str(self.model_path),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.config.cpu_threads,
            local_files_only=True,
        )
        self._watch = _SampleWatch(self.model.model)
        self.model.model = self._watch

    def transcribe(self, audio: np.ndarray, speech: Sequence[Span] | None = None) -> list[AsrSegment]:
        c = self.config
        dur = audio.size / SAMPLE_RATE
        if audio.size == 0:
            return []
        if c.vad_filter and speech is not None:
            chunks = merge_spans(list(speech), gap_s=c.chunk_merge_gap_s, pad_s=c.chunk_pad_s, lo=0.0, hi=dur)
        else:
            chunks = [(0.0, dur)]
        if not chunks:
            return []
        cat = np.concatenate([audio[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)] for s, e in chunks]).astype(np.float32, copy=False)
        # the chunk map uses the concatenated sample counts, so round the spans the same way
        chunks = [(int(s * SAMPLE_RATE) / SAMPLE_RATE, int(e * SAMPLE_RATE) / SAMPLE_RATE) for s, e in chunks]
        cmap = _ChunkMap(chunks)
        # the watch is None after a reload that failed (e.g. out of memory): load again
        if self._watch is None or (self._watch.sampled and c.seed is not None):
            self.reloads += 1
            log.debug("reloading %s: the last transcription sampled", self.model_path.name)
            self._load()
        # English-only models (*.en) accept nothing but English
        language = c.language if self.multilingual else "en"
        segments, _info = self.model.transcribe(
            cat,
            language=language,
            beam_size=c.beam_size,
            word_timestamps=True,
            vad_filter=False,  # VAD already applied: our silero spans are the chunks
            condition_on_previous_text=c.condition_on_previous_text,
            initial_prompt=c.initial_prompt,
            temperature=list(c.temperature),
        )
        out = []
        for seg in segments:
            words = []
            for w in seg.words or []:
                # both ends of a word map through the chunk of its centre (never across a join)
                i = cmap.index((w.start + w.end) / 2)
                words.append(Word(w.word.strip(), cmap.to_orig(w.start, i), cmap.to_orig(w.end, i), float(w.probability)))
            words = [w for w in words if w.word]
            if not words:
                continue
            out.append(AsrSegment(seg.text.strip(), words[0].start_s, words[-1].end_s, tuple(words)))
        return out


# ---------------------------------------------------------------------------------------------
# whisperx (optional extra)


def _import_whisperx():
    try:
        import whisperx  # noqa: F401
    except ImportError as e:
        raise BackendUnavailable(
            "the whisperx ASR backend needs the `whisperx` package, which is not installed "
            f"({e}). It pins its own torch (2.8) and torchaudio, so install it in an environment built for it: "
            "`pip install 'flameqa[whisperx]'` on your GPU stack, or `pip install --no-deps whisperx` beside a "
            "working torch/torchaudio. Its alignment model (wav2vec2) downloads on first use unless "
            "speech.asr.whisperx_align_model points at a local folder. Or use speech.asr_backend=faster-whisper."
        ) from e
    return whisperx


class WhisperXAsr:
    """whisperx: batched faster-whisper transcription + wav2vec2 forced alignment of the words."""

    name = "whisperx"

    def __init__(self, model: str | os.PathLike, config: AsrConfig | None = None, device: str = "cpu", allow_download: bool = False) -> None:
        wx = _import_whisperx()
        self.wx = wx
        self.config = config or AsrConfig()
        self.device = resolve_device(device)
        self.compute_type = compute_type_for(self.config, self.device)
        try:
            arch = str(resolve_whisper_model(str(model), allow_download=False))
        except FileNotFoundError:
            if not allow_download:
                raise
            arch = str(model)  # whisperx resolves hub names itself
        asr_options = {"beam_size": self.config.beam_size, "condition_on_previous_text": self.config.condition_on_previous_text}
        if self.config.initial_prompt:
            asr_options["initial_prompt"] = self.config.initial_prompt
        self.model = wx.load_model(
            arch,
            self.device,
            compute_type=self.compute_type,
            asr_options=asr_options,
            language=self.config.language,
            vad_method=self.config.whisperx_vad_method,
            local_files_only=not allow_download,
            threads=self.config.cpu_threads or 4,
        )
        self._align: dict[str, tuple] = {}

    def _align_model(self, language: str):
        if language not in self._align:
            self._align[language] = self.wx.load_align_model(language_code=language, device=self.device, model_name=self.config.whisperx_align_model)
        return self._align[language]

    def transcribe(self, audio: np.ndarray, speech: Sequence[Span] | None = None) -> list[AsrSegment]:
        if audio.size == 0:
            return []
        # whisperx runs its own VAD (it batches VAD chunks); our spans only gate empty windows
        if speech is not None and not speech:
            return []
        result = self.model.transcribe(audio.astype(np.float32, copy=False), batch_size=self.config.batch_size, language=self.config.language)
        lang = result.get("language") or self.config.language or "en"
        am, meta = self._align_model(lang)
        aligned = self.wx.align(result["segments"], am, meta, audio, self.device, return_char_alignments=False)
        return whisperx_segments(aligned.get("segments", []))


def whisperx_segments(segments: Sequence[dict]) -> list[AsrSegment]:
    """whisperx's aligned segments → AsrSegment; words the aligner could not place (digits,
    symbols: no start/end) get times interpolated between their neighbours."""
    out = []
    for seg in segments:
        raw = [w for w in seg.get("words", []) if str(w.get("word", "")).strip()]
        if not raw:
            continue
        s0, s1 = float(seg.get("start", 0.0)), float(seg.get("end", 0.0))
        starts = [w.get("start") for w in raw]
        ends = [w.get("end") for w in raw]
        words = []
        for i, w in enumerate(raw):
            st = starts[i]
            en = ends[i]
            if st is None:
                prev = next((ends[j] for j in range(i - 1, -1, -1) if ends[j] is not None), s0)
                st = prev
            if en is None:
                nxt = next((starts[j] for j in range(i + 1, len(raw)) if starts[j] is not None), s1)
                en = max(st, nxt)
            words.append(Word(str(w["word"]).strip(), float(st), float(en), float(w.get("score", 0.0) or 0.0)))
        out.append(AsrSegment(str(seg.get("text", "")).strip(), words[0].start_s, words[-1].end_s, tuple(words)))
    return out


def load_asr(config: SpeechConfig) -> AsrBackend:
    """The configured ASR backend, model loaded (raises BackendUnavailable / ModelNotFoundError)."""
    cls = {"faster-whisper": FasterWhisperAsr, "whisperx": WhisperXAsr}[config.asr_backend]
    return cls(config.asr_model, config.asr, device=config.device, allow_download=config.allow_download)
