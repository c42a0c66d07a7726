"""Real-time factor of the speech steps per model (used by `flameqa bench speech` and bench/)."""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)


def _looped(audio: np.ndarray, seconds: float) -> np.ndarray:
    reps = int(np.ceil(seconds * 16000 / max(1, audio.size)))
    return np.tile(audio, reps)[: int(seconds * 16000)]


def bench_rtf(audio: str | os.PathLike | None, models: Sequence[str], seconds: float = 120.0, compute_type: str = "auto") -> dict[str, Any]:
    """Time VAD, ASR and diarization on ``seconds`` of speech (``audio`` looped, default an espeak-ng
    dialogue). RTF = processing seconds / audio seconds, per step and in total, per model."""
    import soundfile as sf

    from flameqa.speech.audio import read_audio
    from flameqa.speech.config import AsrConfig, SpeechConfig
    from flameqa.speech.pipeline import SpeechPipeline

    if audio is None:
        from flameqa.speech.synth import dialogue

        x, _ = dialogue()
        source = "espeak-ng dialogue (en-us+m3 / en-us+f3)"
    else:
        x = read_audio(audio)
        source = str(audio)
    x = _looped(x, seconds)
    out: dict[str, Any] = {
        "source": source,
        "audio_s": round(x.size / 16000, 1),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "results": [],
    }
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "bench.wav"
        sf.write(str(wav), x, 16000)
        for m in models:
            cfg = SpeechConfig(asr_model=m, asr=AsrConfig(compute_type=compute_type), num_speakers=2)
            t0 = time.perf_counter()
            p = SpeechPipeline(cfg)
            load = time.perf_counter() - t0
            p.process(wav, 0.0, min(10.0, x.size / 16000))  # warm-up (first-call allocations)
            t0 = time.perf_counter()
            r = p.process(wav)
            total = time.perf_counter() - t0
            dur = r.duration_s
            out["results"].append(
                {
                    **p.describe(),
                    "model": m,
                    "load_s": round(load, 2),
                    "rtf_total": round(total / dur, 4),
                    **{f"rtf_{k}": round(v / dur, 4) for k, v in r.timings.items()},
                    "words": len(r.words),
                    "speakers": len({t.speaker for t in r.turns}),
                }
            )
            log.info("%s: %s", m, out["results"][-1])
    return out
