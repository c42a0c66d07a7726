"""Landmark-embedding helpers that work on any FLAME-format mesh (numpy, no torch).

- :func:`vertex_embedding`: landmarks that sit exactly on vertices, as one-hot barycentrics, so they
  share the barycentric gather of the other landmarks (the demo head's MediaPipe set, FLAME's iris).
- :func:`contour_table`: a yaw-dependent jaw-line table in the RingNet/FLAME ``[79, 17]`` layout
  built from the mesh's own silhouette — for meshes without a published 68-point embedding and for
  testing the contour lookup against geometry.
- :func:`eye_joint_sides`: which eye joint is which, from skinning weights.
- :data:`MEDIAPIPE_TO_IBUG68`: MediaPipe indices commonly used for the iBUG-68 points (approximate;
  MediaPipe has no exact jaw-line contour), used to build a demo 68-point embedding.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flameqa.flame.io import Lmk68Embedding

__all__ = ["vertex_embedding", "contour_table", "contour_row_yaw_deg", "eye_joint_sides", "MEDIAPIPE_TO_IBUG68", "demo_lmk68"]

# iBUG-68 order: 17 jaw line (subject's right → chin → left), 10 brows, 9 nose, 12 eyes, 20 mouth.
MEDIAPIPE_TO_IBUG68: tuple[int, ...] = (
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip


def vertex_embedding(faces: np.ndarray, vertex_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One-hot barycentric embedding of vertices: ``(face_idx [L], bary [L, 3])``."""
    fidx = np.empty(len(vertex_ids), np.int64)
    bary = np.zeros((len(vertex_ids), 3), np.float32)
    for i, v in enumerate(vertex_ids):
        rows, cols = np.nonzero(faces == v)
        if rows.size == 0:
            raise ValueError(f"vertex {v} belongs to no face")
        fidx[i] = rows[0]
        bary[i, cols[0]] = 1.0
    return fidx, bary


def contour_row_yaw_deg(row: int, max_deg: int = 39) -> int:
    """File-yaw (degrees) of a table row: rows 0..39 → 0..39, rows 40..78 → −1..−39."""
    return row if row <= max_deg else max_deg - row


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def contour_table(
    vertices: np.ndarray,
    faces: np.ndarray,
    candidates: Sequence[int],
    heights: Sequence[float],
    *,
    yaw_sign: float = -1.0,
    band: float | None = None,
    max_deg: int = 39,
) -> tuple[np.ndarray, np.ndarray]:
    """Jaw-line contour per head yaw, from the silhouette of the rest mesh.

    For each row (file-yaw y, head yaw ψ = y / ``yaw_sign`` degrees, + = turned toward the subject's
    left) the mesh is rotated by ψ about +y and viewed along −z; slot s takes the candidate vertex
    nearest height ``heights[s]`` that is outermost on its side (min x for the first half = subject's
    right, max x for the second half); the middle slot is the chin (lowest candidate).

    Args:
        vertices: ``[V, 3]`` rest mesh (y up, z toward the camera).
        candidates: vertex ids allowed on the contour (lower face).
        heights: 17 slot heights (model units), right side top→bottom, chin, left side bottom→top.

    Returns:
        ``face_idx [79, 17]``, ``bary [79, 17, 3]`` (one-hot on the chosen vertices).
    """
    cand = np.asarray(candidates)
    heights = np.asarray(heights, float)
    if heights.shape != (17,):
        raise ValueError(f"heights must have 17 entries, got {heights.shape}")
    band = band if band is not None else float(np.median(np.abs(np.diff(heights)))) * 0.75
    n_rows = 2 * max_deg + 1
    chosen = np.empty((n_rows, 17), np.int64)
    for r in range(n_rows):
        psi = contour_row_yaw_deg(r, max_deg) / yaw_sign
        rv = vertices[cand] @ _rot_y(psi).T
        for s, h in enumerate(heights):
            if s == 8:
                chosen[r, s] = cand[np.argmin(rv[:, 1])]
                continue
            near = np.abs(vertices[cand, 1] - h) <= band
            if not near.any():
                near = np.abs(vertices[cand, 1] - h) <= np.abs(vertices[cand, 1] - h).min() + 1e-9
            side = rv[:, 0] if s > 8 else -rv[:, 0]  # outermost on this side
            score = np.where(near, side, -np.inf)
            chosen[r, s] = cand[np.argmax(score)]
    fidx, bary = vertex_embedding(faces, chosen.ravel().tolist())
    return fidx.reshape(n_rows, 17), bary.reshape(n_rows, 17, 3)


def eye_joint_sides(weights: np.ndarray, left_eye_vertices: Sequence[int], right_eye_vertices: Sequence[int]) -> dict[str, int]:
    """Which joint drives each eyeball: the joint with the largest summed skinning weight over the
    eyeball's vertices (e.g. FLAME_masks.pkl ``left_eyeball`` / ``right_eyeball``)."""
    return {
        "left": int(np.argmax(weights[list(left_eye_vertices)].sum(0))),
        "right": int(np.argmax(weights[list(right_eye_vertices)].sum(0))),
    }


def demo_lmk68(vertices: np.ndarray, faces: np.ndarray, yaw_sign: float = -1.0) -> Lmk68Embedding:
    """A 68-point embedding for the demo head (vertex i = MediaPipe landmark i): static points from
    :data:`MEDIAPIPE_TO_IBUG68`, the contour from :func:`contour_table` over the lower face."""
    v = vertices
    sf, sb = vertex_embedding(faces, MEDIAPIPE_TO_IBUG68[17:])
    mesh = np.arange(min(468, v.shape[0]))
    chin_y, top_y = v[152, 1], v[234, 1]
    lower = mesh[(v[mesh, 1] <= top_y + 1e-6) & (v[mesh, 2] < v[1, 2] - 0.2 * (v[1, 2] - v[234, 2]))]
    side = np.linspace(top_y, chin_y + 0.1 * (top_y - chin_y), 8)
    heights = np.concatenate([side, [chin_y], side[::-1]])
    df, db = contour_table(v, faces, lower, heights, yaw_sign=yaw_sign)
    return Lmk68Embedding(sf, sb, df, db, yaw_sign=yaw_sign, source="flameqa demo 68-point embedding (synthetic)")
