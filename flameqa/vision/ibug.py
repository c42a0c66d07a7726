"""MediaPipe 478 landmarks → the iBUG / 300-W 68-point markup, and the error measure (NME).

The 68 points are numbered 0-67 as in 300-W (``*.pts`` files count from 1 in their docs; arrays
here are 0-based). "Left/right" below is the image side: point 36 is the outer corner of the eye
on the image left (the subject's right eye).

How each group corresponds (MediaPipe indices from its canonical face mesh topology):

* **Jaw 0-16** — iBUG places these evenly along the visible jaw contour from the ear (0, 16) to the
  chin (8). MediaPipe's face-oval vertices trace the same contour but are spaced unevenly and
  differently, so no fixed vertex matches 1-7 and 9-15. The map resamples the oval at equal arc
  length: 9 points from 127 to the chin 152 through
  ``127 234 93 132 58 172 136 150 149 176 148 152`` and 9 from 356 to 152 through
  ``356 454 323 361 288 397 365 379 378 400 377 152``. iBUG follows the visible outline, and with
  a turned head the far cheek, not the oval (which turns behind it), makes that outline: each oval
  vertex is therefore first pushed out, along the ray from the mesh centroid through it, onto the
  convex hull of the projected mesh — the mesh's own silhouette, convex on the lower face. On a
  frontal face the hull runs along the oval and nothing moves. This group still has the largest
  error: the mesh ends at the cheek where the annotated outline may lie on hair or ear.
* **Brows 17-26** — MediaPipe has two rows per brow, above (70 63 105 66 107 / 336 296 334 293 300)
  and below (46 53 52 65 55 / 285 295 282 283 276) the hairs; iBUG points lie on the brow, so
  each point is the mean of the vertically paired vertices (the brow's mid-line).
* **Nose 27-35** — bridge 27-30 at equal steps down the seven ridge vertices
  168 6 197 195 5 4 1 (nasion 168 … pronasale 1): 168 197 5 1; base 31-35: alar bases 98 / 327,
  nostril edges 97 / 326, subnasale 2.
* **Eyes 36-47** — corners 33 133 / 362 263; lids at one and two thirds of MediaPipe's
  nine-vertex lid contours: upper 160 158 / 385 387, lower 153 144 / 373 380.
* **Mouth 48-67** — 300-W puts the outer-lip points 50 / 52 on the peaks of Cupid's bow, 56 / 58
  straight below them, 49 / 53 / 55 / 59 halfway to the corners, and the inner-lip points 61 / 63 /
  65 / 67 in line with the peaks. MediaPipe: corners 61 / 291 (outer) and 78 / 308 (inner);
  upper outer 39 37 0 267 269; lower outer 321 314 17 84 91; inner 82 13 312 / 317 14 87.
  (Also the correspondence most FLAME trackers use; on the test faces it beat equal-arc-length
  resampling of the lip contours, which drifts towards the corners where MediaPipe packs vertices.)
"""

from __future__ import annotations

import numpy as np

JAW_LEFT = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152)
JAW_RIGHT = (356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152)

#: iBUG points 17-67: tuples of MediaPipe indices whose mean is the point.
IBUG_FROM_MEDIAPIPE: dict[int, tuple[int, ...]] = {
    # brows: upper and lower contour, averaged (mid-line)
    17: (70, 46), 18: (63, 53), 19: (105, 52), 20: (66, 65), 21: (107, 55),
    22: (336, 285), 23: (296, 295), 24: (334, 282), 25: (293, 283), 26: (300, 276),
    # nose bridge and base
    27: (168,), 28: (197,), 29: (5,), 30: (1,),
    31: (98,), 32: (97,), 33: (2,), 34: (326,), 35: (327,),
    # eyes
    36: (33,), 37: (160,), 38: (158,), 39: (133,), 40: (153,), 41: (144,),
    42: (362,), 43: (385,), 44: (387,), 45: (263,), 46: (373,), 47: (380,),
    # outer lips
    48: (61,), 49: (39,), 50: (37,), 51: (0,), 52: (267,), 53: (269,),
    54: (291,), 55: (321,), 56: (314,), 57: (17,), 58: (84,), 59: (91,),
    # inner lips
    60: (78,), 61: (82,), 62: (13,), 63: (312,), 64: (308,), 65: (317,), 66: (14,), 67: (87,),
}  # fmt: skip

GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "brows": tuple(range(17, 27)),
    "nose": tuple(range(27, 36)),
    "eyes": tuple(range(36, 48)),
    "mouth": tuple(range(48, 68)),
}


def _resample(poly: np.ndarray, n: int) -> np.ndarray:
    """``n`` points at equal arc length along a polyline ``[P, D]`` (ends included)."""
    seg = np.linalg.norm(np.diff(poly[:, :2], axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, poly[:, d]) for d in range(poly.shape[1])], axis=1)


def _on_silhouette(mesh: np.ndarray, chain: tuple[int, ...]) -> np.ndarray:
    """Vertices ``chain`` of one face ``[478, D]`` moved out onto the convex hull of its 468 mesh
    vertices (x, y), each along the ray from the centroid through it → ``[len(chain), D]``.

    The point on a hull edge interpolates all D coordinates of the edge's two vertices. A vertex
    on the hull stays where it is; degenerate meshes (all points on a line) are returned as is.
    """
    from scipy.spatial import ConvexHull, QhullError

    xy = mesh[:468, :2]
    try:
        hull = ConvexHull(xy).vertices  # counter-clockwise
    except (QhullError, ValueError):
        return mesh[list(chain)].copy()
    a, b = mesh[hull], mesh[np.roll(hull, -1)]  # hull edges a → b, [E, D]
    c = xy.mean(axis=0)
    d = mesh[list(chain), :2] - c  # ray directions [K, 2]
    e = (b - a)[:, :2]  # [E, 2]
    w = a[:, :2] - c  # [E, 2]
    # c + t·d = a + u·e  ⇔  t·d − u·e = w; Cramer's rule for every (ray k, edge j): [K, E]
    det = -d[:, None, 0] * e[None, :, 1] + d[:, None, 1] * e[None, :, 0]
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    t = (-w[None, :, 0] * e[None, :, 1] + w[None, :, 1] * e[None, :, 0]) / det
    u = (d[:, None, 0] * w[None, :, 1] - d[:, None, 1] * w[None, :, 0]) / det
    hit = ok & (t > 0) & (u >= -1e-9) & (u <= 1 + 1e-9)
    # the centroid is inside the hull, so each ray leaves it through exactly one edge (two at a
    # hull vertex, same point): take the farthest hit
    j = np.where(hit, t, -np.inf).argmax(axis=1)
    uj = np.clip(u[np.arange(len(chain)), j], 0.0, 1.0)[:, None]
    out = a[j] + uj * (b[j] - a[j])
    missed = ~hit.any(axis=1)  # only for a vertex at the centroid itself
    out[missed] = mesh[np.asarray(chain)[missed]]
    return out


def to_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """MediaPipe landmarks ``[..., 478, D]`` → iBUG-68 points ``[..., 68, D]`` (same units)."""
    lm = np.asarray(landmarks, np.float64)
    flat = lm.reshape(-1, lm.shape[-2], lm.shape[-1])
    out = np.empty((flat.shape[0], 68, lm.shape[-1]))
    for b, f in enumerate(flat):
        left = _resample(_on_silhouette(f, JAW_LEFT), 9)  # 0 … 8 (chin)
        right = _resample(_on_silhouette(f, JAW_RIGHT), 9)  # 16 … 8
        out[b, :9] = left
        out[b, 9:17] = right[::-1][1:]
    for k, idx in IBUG_FROM_MEDIAPIPE.items():
        out[:, k] = flat[:, list(idx)].mean(axis=1)
    return out.reshape(*lm.shape[:-2], 68, lm.shape[-1])


def interocular(points68: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance (points 36-45), the 300-W normaliser: ``[..., 68, 2]`` → ``[...]``."""
    p = np.asarray(points68, np.float64)
    return np.linalg.norm(p[..., 36, :2] - p[..., 45, :2], axis=-1)


def nme(pred68: np.ndarray, truth68: np.ndarray, points: tuple[int, ...] | None = None) -> float:
    """Mean point error / outer inter-ocular distance of the truth (2-D), over ``points`` (default all)."""
    pred = np.asarray(pred68, np.float64)[..., :2]
    truth = np.asarray(truth68, np.float64)[..., :2]
    idx = list(points) if points is not None else list(range(68))
    err = np.linalg.norm(pred[..., idx, :] - truth[..., idx, :], axis=-1).mean(axis=-1)
    return float(np.mean(err / interocular(truth)))


def read_pts(path) -> np.ndarray:
    """Read a menpo/300-W ``.pts`` file (header, ``{``, one ``x y`` per line, ``}``) → ``[N, 2]``."""
    from pathlib import Path

    text = Path(path).read_text()
    try:
        body = text.split("{", 1)[1].split("}", 1)[0]
    except IndexError:
        raise ValueError(f"{path}: not a .pts file (no {{ … }} block)") from None
    pts = np.array([[float(v) for v in line.split()] for line in body.strip().splitlines() if line.strip()])
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{path}: expected 'x y' per line, got shape {pts.shape}")
    return pts
