"""Audio I/O for the speech stage: probe, read a time range as 16 kHz mono float32, quality flags.

Reads only the requested range (soundfile seeks; PyAV seeks and decodes forward), so memory grows
with the window asked for, never with the file. Any rate and channel count is accepted: channels are
averaged and the rate is converted with a polyphase filter. Files soundfile cannot open (video
containers, AAC, ...) are decoded with PyAV.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Rate (Hz) every speech model here works at."""


class NoAudioError(ValueError):
    """The file exists but carries no audio stream (or no audio samples)."""


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    """Native rate of the file (Hz)."""
    channels: int
    duration_s: float
    backend: str
    """``soundfile`` or ``pyav``: which reader handles this file."""


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Rate, channels and duration (seconds) of ``path``.

    Raises FileNotFoundError when the file is missing and NoAudioError when it has no audio stream.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"audio file {p} does not exist")
    import soundfile as sf

    try:
        info = sf.info(str(p))
        return AudioInfo(str(p), int(info.samplerate), int(info.channels), float(info.frames) / info.samplerate, "soundfile")
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass  # not a format libsndfile reads: try a container decoder
    import av

    try:
        with av.open(str(p)) as c:
            if not c.streams.audio:
                raise NoAudioError(f"{p} has no audio stream (streams: {[s.type for s in c.streams] or 'none'})")
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                dur = float(s.duration * s.time_base)
            elif c.duration is not None:
                dur = c.duration / 1e6  # container duration is in microseconds (av.time_base)
            else:
                dur = math.nan
            return AudioInfo(str(p), int(s.rate or s.codec_context.sample_rate), int(s.channels or 1), dur, "pyav")
    except av.error.FFmpegError as e:
        raise NoAudioError(f"{p} is not a readable audio or video file: {e}") from e


def _to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a 1-D signal (anti-aliased), float32 out."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    f = Fraction(sr_out, sr_in)
    return resample_poly(x, f.numerator, f.denominator).astype(np.float32)


def read_audio(
    path: str | os.PathLike, start_s: float = 0.0, end_s: float | None = None, info: AudioInfo | None = None
) -> np.ndarray:
    """Samples of ``[start_s, end_s)`` (seconds; None = to the end) as 16 kHz mono float32 in [-1, 1].

    Shape ``(N,)`` with N ≈ (end_s - start_s) * 16000 (shorter when the file ends first).
    """
    info = info or probe_audio(path)
    start_s = max(0.0, float(start_s))
    if end_s is not None and end_s <= start_s:
        return np.zeros(0, np.float32)
    if info.backend == "soundfile":
        import soundfile as sf

        with sf.SoundFile(info.path) as f:
            a = int(round(start_s * info.sample_rate))
            if a >= f.frames:
                return np.zeros(0, np.float32)
            f.seek(a)
            n = -1 if end_s is None else max(0, int(round(end_s * info.sample_rate)) - a)
            x = f.read(n, dtype="float32", always_2d=True)
        return resample(_to_mono(x), info.sample_rate)
    return _read_pyav(info, start_s, end_s)


def _read_pyav(info: AudioInfo, start_s: float, end_s: float | None) -> np.ndarray:
    import av

    from flameqa.io.media import mono_resampler, mono_samples

    parts: list[np.ndarray] = []
    first_t: float | None = None
    with av.open(info.path) as c:
        if not c.streams.audio:
            raise NoAudioError(f"{info.path} has no audio stream")
        s = c.streams.audio[0]
        if start_s > 1.0:
            # seek lands on a packet at or before the target; samples before it are cut below
            c.seek(int((start_s - 1.0) / s.time_base), stream=s, any_frame=False, backward=True)
        rs = mono_resampler(SAMPLE_RATE)

        def take(frames) -> bool:
            nonlocal first_t
            for g in frames:
                if first_t is None:
                    first_t = float(g.pts * g.time_base) if g.pts is not None else 0.0
                parts.append(mono_samples(g))
            got = first_t is not None and first_t + sum(len(p) for p in parts) / SAMPLE_RATE
            return bool(end_s is not None and got and got >= end_s)

        done = False
        for frame in c.decode(s):
            if take(rs.resample(frame)):
                done = True
                break
        if not done:
            take(rs.resample(None))
    if not parts:
        return np.zeros(0, np.float32)
    x = np.concatenate(parts).astype(np.float32, copy=False)
    off = int(round((start_s - (first_t or 0.0)) * SAMPLE_RATE))
    if off < 0:  # stream starts after start_s: pad so sample 0 is start_s
        x = np.concatenate([np.zeros(-off, np.float32), x])
        off = 0
    x = x[off:]
    if end_s is not None:
        x = x[: int(round((end_s - start_s) * SAMPLE_RATE))]
    return x


@dataclass(frozen=True)
class AudioStats:
    """Level figures of a signal (float samples in [-1, 1])."""

    rms_dbfs: float
    peak: float
    clipped_fraction: float
    """Share of samples at or above 0.999 full scale."""

    def flags(self, clip_fraction: float = 1e-3, low_dbfs: float = -60.0) -> list[str]:
        out = []
        if self.clipped_fraction >= clip_fraction:
            out.append("clipped")
        if self.rms_dbfs < low_dbfs:
            out.append("very_quiet")
        return out


def audio_stats(x: np.ndarray) -> AudioStats:
    if x.size == 0:
        return AudioStats(-math.inf, 0.0, 0.0)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return AudioStats(20 * math.log10(rms) if rms > 0 else -math.inf, float(np.max(np.abs(x))), float(np.mean(np.abs(x) >= 0.999)))


class StatsAccumulator:
    """Running level figures over blocks (so a long file never needs to be held whole)."""

    def __init__(self) -> None:
        self.n = 0
        self.sq = 0.0
        self.peak = 0.0
        self.clipped = 0

    def add(self, x: np.ndarray) -> None:
        if x.size:
            self.n += x.size
            self.sq += float(np.sum(np.square(x, dtype=np.float64)))
            self.peak = max(self.peak, float(np.max(np.abs(x))))
            self.clipped += int(np.count_nonzero(np.abs(x) >= 0.999))

    def result(self) -> AudioStats:
        if not self.n:
            return AudioStats(-math.inf, 0.0, 0.0)
        rms = math.sqrt(self.sq / self.n)
        return AudioStats(20 * math.log10(rms) if rms > 0 else -math.inf, self.peak, self.clipped / self.n)
