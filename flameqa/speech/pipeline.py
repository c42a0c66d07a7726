"""One clip's speech: VAD → windowed ASR (+ speaker embeddings on the same windows) → turns → words.

:class:`SpeechPipeline` loads every model once and processes ``(audio file, start_s, end_s)``
ranges. Audio is read block by block for VAD and window by window for ASR/embeddings, so a 1-hour
clip needs memory for one window (``asr.window_s``), not the hour. Bad input never raises: the
result has a ``status`` (ok / no_speech / no_audio / failed) and an ``error`` that says why.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from flameqa.speech.asr import AsrSegment, Word, load_asr, plan_windows
from flameqa.speech.audio import SAMPLE_RATE, AudioInfo, NoAudioError, StatsAccumulator, probe_audio, read_audio
from flameqa.speech.config import SpeechConfig
from flameqa.speech.diarize import EmbeddingDiarizer, PyannoteDiarizer, SingleSpeakerDiarizer, Turn
from flameqa.speech.vad import SileroVad, Span

log = logging.getLogger(__name__)


@dataclass
class WordRow:
    word: Word
    segment_id: int
    turn_id: int | None = None
    speaker: str | None = None


@dataclass
class ClipSpeech:
    """Everything the speech stage learned about one clip (times in seconds from the file start)."""

    status: str
    """ok | no_speech | no_audio | failed"""
    error: str | None = None
    flags: list[str] = field(default_factory=list)
    start_s: float = 0.0
    end_s: float = 0.0
    speech: list[Span] = field(default_factory=list)
    segments: list[AsrSegment] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    words: list[WordRow] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent per step (vad, asr, embed, cluster)."""

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)

    def turn_text(self, turn_id: int) -> str:
        return " ".join(w.word.word for w in self.words if w.turn_id == turn_id)


def assign_words(words: Sequence[WordRow], turns: Sequence[Turn], max_dist_s: float = 1.0) -> None:
    """Give each word the turn it overlaps most (a turn's own core spans first, so a backchannel
    inside a longer turn keeps its word); words off every turn take the nearest within ``max_dist_s``."""

    def overlap(a0: float, a1: float, spans: Sequence[Span]) -> float:
        return sum(max(0.0, min(a1, e) - max(a0, s)) for s, e in spans)

    for w in words:
        s, e = w.word.start_s, w.word.end_s
        if e <= s:
            e = s + 0.01
        best, best_v = None, 0.0
        for level in ("core", "extent"):
            for i, t in enumerate(turns):
                v = overlap(s, e, t.core if level == "core" else [(t.start_s, t.end_s)])
                # among equal overlaps the shorter turn is the more specific one
                if v > best_v + 1e-9 or (best is not None and abs(v - best_v) <= 1e-9 and v > 0 and t.duration_s < turns[best].duration_s):
                    best, best_v = i, v
            if best is not None:
                break
        if best is None and turns:
            d = [max(t.start_s - e, s - t.end_s, 0.0) for t in turns]
            i = int(np.argmin(d))
            if d[i] <= max_dist_s:
                best = i
        if best is not None:
            w.turn_id, w.speaker = best, turns[best].speaker


class SpeechPipeline:
    """VAD + ASR + diarization models, loaded once; ``process`` one audio range at a time."""

    def __init__(self, config: SpeechConfig | None = None) -> None:
        self.config = config or SpeechConfig()
        c = self.config
        t0 = time.perf_counter()
        self.vad = SileroVad(c.vad)
        self.asr = load_asr(c)
        if c.diarization_backend == "embeddings":
            self.diarizer = EmbeddingDiarizer(c.diarization, device=c.device)
        elif c.diarization_backend == "pyannote":
            self.diarizer = PyannoteDiarizer(c.diarization, device=c.device)
        else:
            self.diarizer = SingleSpeakerDiarizer(c.diarization)
        self.load_s = time.perf_counter() - t0
        log.info("speech models loaded in %.1f s", self.load_s)

    def describe(self) -> dict[str, str]:
        """Backends and models in use (for markers and reports)."""
        return {
            "asr_backend": self.asr.name,
            "asr_model": str(getattr(self.asr, "model_path", self.config.asr_model)),
            "compute_type": str(getattr(self.asr, "compute_type", "")),
            "diarization_backend": self.diarizer.name,
        }

    def process(self, path: str | os.PathLike | None, start_s: float = 0.0, end_s: float | None = None, num_speakers: int | None = None) -> ClipSpeech:
        """Speech of ``path`` between ``start_s`` and ``end_s`` (seconds; None = file end). Never raises
        for bad media: the result's status/error say what happened."""
        if path is None or str(path) == "":
            return ClipSpeech("no_audio", "the clip has no audio file (audio_path is null: the video has no audio stream?)", start_s=start_s, end_s=end_s or start_s)
        try:
            info = probe_audio(path)
        except NoAudioError as e:
            return ClipSpeech("no_audio", str(e), start_s=start_s, end_s=end_s or start_s)
        except FileNotFoundError as e:
            return ClipSpeech("failed", str(e), start_s=start_s, end_s=end_s or start_s)
        dur = info.duration_s if math.isfinite(info.duration_s) else float("inf")
        a, b = max(0.0, float(start_s)), min(dur, float(end_s) if end_s is not None else dur)
        if not math.isfinite(b):
            return ClipSpeech("failed", f"{path}: unknown duration and no end_s given", start_s=a, end_s=a)
        res = ClipSpeech("ok", start_s=a, end_s=b)
        if info.sample_rate != SAMPLE_RATE:
            res.flags.append(f"resampled_from_{info.sample_rate}hz")
        if info.channels > 1:
            res.flags.append(f"downmixed_{info.channels}ch")
        if b - a < 0.1:
            res.status, res.error = "no_speech", f"audio range {a:.2f}-{b:.2f} s is too short to hold speech"
            return res
        try:
            return self._process(info, res, num_speakers if num_speakers is not None else self.config.num_speakers)
        except NoAudioError as e:
            res.status, res.error = "no_audio", str(e)
            return res

    def _read(self, info: AudioInfo, a: float, b: float) -> np.ndarray:
        return read_audio(info.path, a, b, info=info)

    def _process(self, info: AudioInfo, res: ClipSpeech, num_speakers: int | None) -> ClipSpeech:
        c = self.config
        a, b = res.start_s, res.end_s
        stats = StatsAccumulator()
        t0 = time.perf_counter()
        res.speech = self.vad.scan(lambda x, y: self._read(info, x, y), a, b, on_block=stats.add)
        res.timings["vad"] = time.perf_counter() - t0
        level = stats.result()
        res.flags += level.flags()
        if not res.speech:
            res.status = "no_speech"
            res.error = f"no speech detected in {b - a:.1f} s of audio (level {level.rms_dbfs:.0f} dBFS, peak {level.peak:.2f})"
            return res
        t_asr = t_emb = 0.0
        for w0, w1, spans in plan_windows(res.speech, c.asr.window_s, a, b):
            x = self._read(info, w0, w1)
            t1 = time.perf_counter()
            segs = self.asr.transcribe(x, [(s - w0, e - w0) for s, e in spans])
            res.segments += [s.shifted(w0) for s in segs]
            t2 = time.perf_counter()
            if not isinstance(self.diarizer, PyannoteDiarizer):
                self.diarizer.add(x, w0, spans)
            t_emb += time.perf_counter() - t2
            t_asr += t2 - t1
        res.timings["asr"] = t_asr
        t3 = time.perf_counter()
        if isinstance(self.diarizer, PyannoteDiarizer):
            # pyannote segments the whole range at once (its memory grows with the clip)
            res.turns = self.diarizer.diarize(self._read(info, a, b), offset_s=a, num_speakers=num_speakers)
        else:
            res.turns = self.diarizer.finish(num_speakers)
        res.timings["diarize"] = t_emb + time.perf_counter() - t3
        res.words = [WordRow(w, k) for k, seg in enumerate(res.segments) for w in seg.words]
        assign_words(res.words, res.turns)
        if not res.words:
            res.status = "no_speech"
            res.error = f"VAD found {sum(e - s for s, e in res.speech):.1f} s of speech-like audio but ASR recognized no words (noise or non-speech?)"
            res.flags.append("no_words")
        return res
