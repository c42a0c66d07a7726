"""A tiny random FLAME-format model for solver tests (no FLAME layer needed)."""

from __future__ import annotations

import numpy as np


def toy_arrays(n_vertices: int = 80, n_landmarks: int = 40, n_shape: int = 6, n_expr: int = 5, seed: int = 0, one_hot: bool = False) -> dict:
    """Random vertices in four regions (rigid, jaw, left eye, right eye); triangles stay inside a region
    so each landmark follows at most one leaf joint, as on a real face."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n_vertices, 3)) * [0.07, 0.09, 0.04]
    v[:, 2] += 0.05
    region = rng.choice(4, n_vertices, p=[0.5, 0.3, 0.1, 0.1])  # 0 rigid, 1 jaw, 2 eye_l, 3 eye_r
    w = np.zeros((n_vertices, 5))
    w[:, 1] = 1.0
    jaw = region == 1
    w[jaw, 2] = rng.uniform(0.2, 1.0, jaw.sum())
    w[jaw, 1] = 1 - w[jaw, 2]
    w[region == 2] = [0, 0, 0, 1, 0]
    w[region == 3] = [0, 0.3, 0, 0, 0.7]
    faces = []
    for r in range(4):
        ids = np.nonzero(region == r)[0]
        for _ in range(max(2, 2 * len(ids))):
            faces.append(rng.choice(ids, 3, replace=len(ids) < 3))
    faces = np.asarray(faces)
    sd = rng.normal(size=(n_vertices, 3, n_shape)) * 0.004
    ed = rng.normal(size=(n_vertices, 3, n_expr)) * 0.003
    pd = rng.normal(size=(n_vertices, 3, 36)) * 0.002
    jr = rng.random((5, n_vertices))
    jr /= jr.sum(1, keepdims=True)
    lf = rng.choice(len(faces), n_landmarks, replace=False)
    if one_hot:
        bary = np.zeros((n_landmarks, 3))
        bary[np.arange(n_landmarks), rng.integers(0, 3, n_landmarks)] = 1
    else:
        bary = rng.random((n_landmarks, 3))
        bary /= bary.sum(1, keepdims=True)
    return dict(
        v_template=v, shapedirs=sd, exprdirs=ed, posedirs=pd, j_regressor=jr, weights=w, parents=(-1, 0, 1, 1, 1),
        faces=faces, lmk_faces_idx=lf, lmk_bary=bary, mp_indices=np.arange(n_landmarks),
    )
