"""A tiny random FLAME-format model for solver tests (no FLAME layer needed)."""

from __future__ import annotations

import numpy as np


def toy_arrays(n_vertices: int = 80, n_landmarks: int = 40, n_shape: int = 6, n_expr: int = 5, seed: int = 0, one_hot: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n_vertices, 3)) * [0.07, 0.09, 0.04]
    v[:, 2] += 0.05
    faces = np.stack([rng.choice(n_vertices, 3, replace=False) for _ in range(2 * n_vertices)])
    sd = rng.normal(size=(n_vertices, 3, n_shape)) * 0.004
    ed = rng.normal(size=(n_vertices, 3, n_expr)) * 0.003
    pd = rng.normal(size=(n_vertices, 3, 36)) * 0.002
    jr = rng.random((5, n_vertices))
    jr /= jr.sum(1, keepdims=True)
    w = np.zeros((n_vertices, 5))
    low = v[:, 1] < -0.02
    w[:, 1] = 1.0
    w[low, 2] = rng.random(low.sum())
    w[low, 1] = 1 - w[low, 2]
    eyes = rng.choice(np.nonzero(~low)[0], 6, replace=False)
    w[eyes[:3]] = [0, 0, 0, 1, 0]
    w[eyes[3:]] = [0, 0.2, 0, 0, 0.8]
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
