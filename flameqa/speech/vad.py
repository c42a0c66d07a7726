"""Voice activity detection with silero-vad (its model ships inside the wheel: no torch.hub, no network).

``silero_vad.read_audio`` needs torchaudio, which is not part of this stack: audio is read with
:mod:`flameqa.speech.audio` and handed over as a 1-D float32 tensor at 16 kHz.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from flameqa.speech.audio import SAMPLE_RATE
from flameqa.speech.config import VadConfig

log = logging.getLogger(__name__)

Span = tuple[float, float]
"""(start_s, end_s) in seconds."""


class SileroVad:
    """Speech segments of a 16 kHz mono signal. Load once, call per signal or per file."""

    def __init__(self, config: VadConfig | None = None) -> None:
        from silero_vad import load_silero_vad

        self.config = config or VadConfig()
        self.model = load_silero_vad(onnx=self.config.onnx)

    def __call__(self, audio: np.ndarray, offset_s: float = 0.0) -> list[Span]:
        """Speech spans (seconds, shifted by ``offset_s``) of ``audio``: shape (N,), float32, 16 kHz."""
        import torch
        from silero_vad import get_speech_timestamps

        c = self.config
        if audio.size < 512:  # silero scores 32 ms frames: nothing shorter can be judged
            return []
        with torch.inference_mode():
            ts = get_speech_timestamps(
                torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                self.model,
                threshold=c.threshold,
                sampling_rate=SAMPLE_RATE,
                min_speech_duration_ms=int(c.min_speech_s * 1000),
                max_speech_duration_s=c.max_segment_s,
                min_silence_duration_ms=int(c.min_silence_s * 1000),
                speech_pad_ms=int(c.pad_s * 1000),
            )
        return [(offset_s + t["start"] / SAMPLE_RATE, offset_s + t["end"] / SAMPLE_RATE) for t in ts]

    def scan(self, read: Callable[[float, float], np.ndarray], start_s: float, end_s: float, on_block: Callable[[np.ndarray], None] | None = None) -> list[Span]:
        """Speech spans of ``[start_s, end_s)`` read block by block with ``read(a, b)`` (16 kHz mono).

        Spans cut by a block boundary are joined again; ``on_block`` sees every block once (level
        statistics). Memory holds one block (``config.block_s``) at a time.
        """
        spans: list[Span] = []
        t = start_s
        block = max(30.0, self.config.block_s)
        while t < end_s - 1e-6:
            b = min(end_s, t + block)
            x = read(t, b)
            if on_block is not None:
                on_block(x)
            new = self(x, offset_s=t)
            if spans and new and new[0][0] - spans[-1][1] <= self.config.min_silence_s + 2 * self.config.pad_s and abs(spans[-1][1] - t) < 0.1 + self.config.pad_s:
                spans[-1] = (spans[-1][0], new[0][1])
                new = new[1:]
            spans.extend(new)
            if x.size < int((b - t) * SAMPLE_RATE * 0.5):
                break  # the file ended early
            t = b
        return [(max(start_s, s), min(end_s, e)) for s, e in spans if min(end_s, e) > max(start_s, s)]


def merge_spans(spans: list[Span], gap_s: float, pad_s: float = 0.0, lo: float = 0.0, hi: float = float("inf")) -> list[Span]:
    """Widen each span by ``pad_s`` (clamped to [lo, hi]) and join spans closer than ``gap_s``."""
    out: list[list[float]] = []
    for s, e in sorted(spans):
        s, e = max(lo, s - pad_s), min(hi, e + pad_s)
        if out and s - out[-1][1] <= gap_s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]
