"""Mouth opening from MediaPipe landmarks, and mouth activity over time (how much it moves).

MediaPipe indices used: 13 / 14 are the midpoints of the upper / lower inner lip contour;
33 / 263 are the outer eye corners (image-left / image-right eye). Distances are 3-D (x, y in
pixels, z on the x scale), so turning the head changes them less than 2-D distances would.
"""

from __future__ import annotations

import numpy as np

UPPER_INNER_LIP = 13
LOWER_INNER_LIP = 14
EYE_OUTER = (33, 263)


def mouth_open(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap divided by the outer-eye-corner distance: ``[T, 478, 3]`` → ``[T]`` (unitless).

    About 0 with closed lips, ~0.3-0.6 wide open. NaN frames stay NaN.
    """
    lm = np.asarray(landmarks, np.float32)
    gap = np.linalg.norm(lm[..., UPPER_INNER_LIP, :] - lm[..., LOWER_INNER_LIP, :], axis=-1)
    eyes = np.linalg.norm(lm[..., EYE_OUTER[0], :] - lm[..., EYE_OUTER[1], :], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(eyes > 0, gap / eyes, np.nan).astype(np.float32)


def rolling(x: np.ndarray, n: int, stat: str = "mean", min_frac: float = 0.5) -> np.ndarray:
    """NaN-aware centred rolling mean or standard deviation over ``n`` frames: ``[T]`` → ``[T]``.

    A window with fewer than ``min_frac`` × its length valid samples gives NaN (a face that was
    mostly not detected says nothing about its mouth).
    """
    x = np.asarray(x, np.float64)
    n = max(1, int(n))
    valid = np.isfinite(x)
    v = np.where(valid, x, 0.0)
    k = np.ones(n)
    cnt = np.convolve(valid.astype(np.float64), k, mode="same")
    s1 = np.convolve(v, k, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / cnt
        if stat == "mean":
            out = mean
        elif stat == "std":
            s2 = np.convolve(v * v, k, mode="same")
            out = np.sqrt(np.clip(s2 / cnt - mean * mean, 0.0, None))
        else:
            raise ValueError(f"stat must be 'mean' or 'std', got {stat!r}")
    return np.where(cnt >= max(1.0, min_frac * n), out, np.nan)


def mouth_activity(opening: np.ndarray, fps: float, window_s: float = 0.5) -> np.ndarray:
    """How much the mouth moves around each frame: rolling std of ``opening [T]`` over ``window_s``.

    Talking opens and closes the mouth several times a second; listening, smiling or a mouth held
    open do not, so variability (not the opening itself) is what follows the voice.
    """
    return rolling(opening, int(round(window_s * fps)) | 1, "std")
