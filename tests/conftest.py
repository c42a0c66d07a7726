"""Shared fixtures: real media from ../shared/data (skipped with a reason when absent) and small
videos made at test time with PyAV (H.264 + AAC, no ffmpeg binary needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GRID = SHARED / "face_video" / "grid"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def need_shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test media {p} is absent (../shared/data beside the project root)")
    return p


def make_video(
    path: str | os.PathLike,
    seconds: float = 2.0,
    fps: float = 25,
    size: tuple[int, int] = (160, 120),
    audio: bool = True,
    rotation: int = 0,
    sample_rate: int = 16000,
    channels: int = 1,
    cut_at: float | None = None,
    frame_times: list[float] | None = None,
    audio_signal: np.ndarray | None = None,
    container_format: str | None = None,
) -> Path:
    """Encode a synthetic clip: a moving gradient (a colour switch at ``cut_at``), a 220 Hz tone.

    ``frame_times`` (seconds) makes variable-frame-rate video (pts set explicitly).
    """
    import av
    from fractions import Fraction

    path = Path(path)
    w, h = size
    with av.open(str(path), "w", format=container_format) as c:
        vs = c.add_stream("libx264", rate=int(fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if frame_times is not None:
            vs.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            vs.set_display_rotation(rotation)
        ast = None
        if audio:
            ast = c.add_stream("aac", rate=sample_rate)
            ast.layout = "mono" if channels == 1 else "stereo"
        times = frame_times if frame_times is not None else [i / fps for i in range(int(round(seconds * fps)))]
        yy, xx = np.mgrid[0:h, 0:w]
        for i, t in enumerate(times):
            base = 40 if (cut_at is None or t < cut_at) else 200
            img = np.stack([(xx * 2 + i * 3) % 256, (yy * 2) % 256, np.full_like(xx, base)], -1).astype(np.uint8)
            if cut_at is not None and t >= cut_at:
                img = 255 - img
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if frame_times is not None:
                f.pts = int(round(t * 1000))
                f.time_base = Fraction(1, 1000)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if ast is not None:
            dur = times[-1] + 1 / fps if times else seconds
            n = int(dur * sample_rate)
            sig = audio_signal if audio_signal is not None else 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / sample_rate)
            sig = np.asarray(sig, np.float32)
            data = np.tile(sig[None, :], (channels, 1)) if channels > 1 else sig[None, :]
            fmt = "fltp"
            step = 1024
            for k in range(0, data.shape[1], step):
                chunk = np.ascontiguousarray(data[:, k : k + step])
                fr = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=ast.layout.name)
                fr.sample_rate = sample_rate
                fr.pts = k
                for p in ast.encode(fr):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)
    return path


@pytest.fixture
def video_factory(tmp_path):
    def make(name: str = "v.mp4", **kw):
        return make_video(tmp_path / name, **kw)

    return make
