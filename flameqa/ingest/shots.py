"""Shot boundaries from streamed, downscaled gray frames (no extra dependency).

A cut is a frame whose mean absolute difference to the previous one is large both in absolute terms
and relative to the recent motion level (so a talking head moving does not cut, a hard cut does).
"""

from __future__ import annotations

from collections import deque
import os

import numpy as np

from flameqa.io.media import iter_frames


def detect_shots(
    path: str | os.PathLike,
    *,
    fps: float,
    rotation: int = 0,
    threshold: float = 8.0,
    ratio: float = 4.0,
    size: tuple[int, int] = (64, 36),
) -> tuple[list[tuple[float, float]], int]:
    """Return ``([(start_s, end_s), ...], n_frames)`` covering the decoded video at ``fps``.

    ``threshold``: minimum mean |Δ| (0–255) of a cut; ``ratio``: a cut must also exceed ``ratio`` ×
    the median |Δ| of the previous second.
    """
    cuts: list[float] = []
    recent: deque[float] = deque(maxlen=max(3, int(fps)))
    prev = None
    last_t = 0.0
    n = 0
    # luma straight from the decoder's plane, no deblocking: shot detection needs brightness at
    # 64×36 only, and a swscale conversion of each 720p frame cost more than decoding it
    for _, t, img in iter_frames(path, fps=fps, rotation=rotation, size=size, fmt="luma", skip_loop_filter=True):
        g = img.astype(np.float32)
        if prev is not None:
            d = float(np.abs(g - prev).mean())
            base = float(np.median(recent)) if recent else 0.0
            if d >= threshold and d >= ratio * base:
                cuts.append(t)
                recent.clear()
            else:
                recent.append(d)
        prev = g
        last_t = t
        n += 1
    if n == 0:
        return [], 0
    end = last_t + 1.0 / fps
    bounds = [0.0, *cuts, end]
    return [(round(a, 6), round(b, 6)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a], n
