"""Initialization: rigid head pose from MediaPipe, translation by least squares, optional regressor.

No frame is optimized from scratch: the head rotation of every frame comes from MediaPipe's facial
transformation matrix (canonical face mesh, cm → camera, cm) composed with the fixed similarity from
the canonical mesh to the model's frame (estimated once per model by Procrustes on the embedded
landmarks at zero pose; the identity for the demo head, which *is* the canonical mesh). Where a frame
has no matrix, the rotation comes from aligning the model to MediaPipe's 3-D landmarks (x, y in
pixels, z relative depth in the same scale) instead; frames without a face take the nearest observed
frame's pose. The translation then solves the linear least-squares problem that makes the model's
projected landmarks fit the observed ones under the pinhole camera.

A parameter regressor (DECA/EMOCA/SMIRK-style network predicting FLAME parameters from face crops)
can seed identity, expression and jaw: implement :class:`ParamRegressor` and name its factory in
``fit.init.regressor``. It is optional; nothing here depends on one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from flameqa.fit.model import LandmarkModel

# ---------------------------------------------------------------------------------------------
# rotations
# ---------------------------------------------------------------------------------------------


def matrix_to_axis_angle(r: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` → axis-angle ``[..., 3]`` (via the quaternion; stable near 0 and π)."""
    m = r
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # four candidate quaternion components, pick the largest for stability
    q = torch.stack(
        [
            1 + tr,
            1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
        ],
        dim=-1,
    ).clamp_min(0)
    cand = torch.stack(
        [
            torch.stack([q[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], q[..., 1], m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], q[..., 2], m[..., 2, 1] + m[..., 1, 2]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], q[..., 3]], -1),
        ],
        dim=-2,
    )  # [...,4 candidates,4 (w,x,y,z) ∝ 4·q_i·quat]
    best = q.argmax(-1)
    quat = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    quat = quat / quat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    w, v = quat[..., :1], quat[..., 1:]
    sin_half = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, w)
    # angle / sin(angle/2), → 2 as the angle → 0
    k = torch.where(sin_half > 1e-6, angle / sin_half.clamp_min(1e-12), 2.0 / w.clamp_min(1e-12))
    return v * k


def nearest_rotation(m: Tensor) -> Tensor:
    """Closest rotation ``[..., 3, 3]`` to each matrix (SVD, determinant fixed to +1)."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.det(u @ vh)
    fix = torch.ones_like(u[..., 0, :])
    fix[..., 2] = d
    return (u * fix[..., None, :]) @ vh


@dataclass(frozen=True)
class Similarity:
    """x_model ≈ scale · R · x_src + t."""

    scale: float
    rot: np.ndarray
    transl: np.ndarray


def procrustes(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Weighted similarity (Umeyama) mapping ``src [N, 3]`` onto ``dst [N, 3]``."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    cov = (b * w[:, None]).T @ a
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    r = u @ fix @ vt
    var = (w * (a * a).sum(1)).sum()
    scale = float((s * np.diag(fix)).sum() / var)
    return Similarity(scale, r, md - scale * r @ ms)


def canonical_alignment(model: LandmarkModel, canonical_cm: np.ndarray) -> Similarity:
    """Similarity canonical face mesh (cm) → model frame, from the landmarks at zero pose and mean shape.

    Args:
        canonical_cm: ``[468, 3]`` MediaPipe canonical face mesh vertices (cm).
    """
    mp = model.mp_indices.cpu().numpy()
    sel = mp < canonical_cm.shape[0]
    if sel.sum() < 4:
        raise ValueError(f"model {model.model_id!r} has {sel.sum()} landmarks on the canonical mesh; need ≥ 4 to align it")
    zero_b = torch.zeros(1, model.n_shape, dtype=model.dtype, device=model.device)
    zero_x = torch.zeros(1, 1, model.n_params, dtype=model.dtype, device=model.device)
    pts = model.head_points(zero_b, zero_x)[0, 0].double().cpu().numpy()
    return procrustes(canonical_cm[mp[sel]].astype(float), pts[sel])


# ---------------------------------------------------------------------------------------------
# rigid initialization
# ---------------------------------------------------------------------------------------------


def fill_nearest(valid: Tensor, start: Tensor | None = None, end: Tensor | None = None) -> Tensor:
    """Index of the nearest valid frame for each frame: ``valid [T]`` bool → ``[T]`` long (ties → earlier).

    ``start``/``end`` ``[T]`` (optional): the first and one-past-last index of the segment each frame
    belongs to, for many tracks laid end to end; the nearest valid frame is looked for in its own
    segment only. A segment without a valid frame maps to itself (the caller treats it as failed).
    One pass, no host synchronization: the same on CPU and GPU.
    """
    t = valid.shape[0]
    idx = torch.arange(t, device=valid.device)
    big = 4 * t + 4
    prev = torch.where(valid, idx, torch.full_like(idx, -big)).cummax(0).values
    nxt = torch.where(valid, idx, torch.full_like(idx, big)).flip(0).cummin(0).values.flip(0)
    if start is not None:
        prev = torch.where(prev >= start, prev, torch.full_like(idx, -big))
    if end is not None:
        nxt = torch.where(nxt < end, nxt, torch.full_like(idx, big))
    use_prev = (idx - prev) <= (nxt - idx)
    near = torch.where(use_prev, prev, nxt)
    return torch.where((prev > -big) | (nxt < big), near, idx)


def rotation_from_transform(transform: Tensor, align: Similarity) -> tuple[Tensor, Tensor]:
    """Model → camera rotation from MediaPipe matrices.

    Args:
        transform: ``[T, 4, 4]`` canonical (cm) → camera (cm), NaN where missing.
        align: canonical → model similarity.

    Returns:
        ``rot [T, 3, 3]`` and ``ok [T]`` (finite matrices).
    """
    ok = torch.isfinite(transform).all(-1).all(-1)
    m = torch.where(ok[:, None, None], transform, torch.eye(4, dtype=transform.dtype, device=transform.device))
    rc = torch.as_tensor(align.rot, dtype=transform.dtype, device=transform.device)
    # model → canonical is R_cᵀ (up to scale/offset), then canonical → camera is M_R
    r = nearest_rotation(m[:, :3, :3].double()).to(transform.dtype) @ rc.T
    return r, ok


def rotation_from_landmarks(model: LandmarkModel, lmk3d: Tensor, w: Tensor) -> Tensor:
    """Model → camera rotation aligning the model's landmarks to MediaPipe's 3-D landmarks.

    Args:
        lmk3d: ``[T, L, 3]`` MediaPipe (x px right, y px down, z relative depth, + away from camera),
            at the model's landmarks; w ``[T, L]`` weights (0 for missing).

    Returns:
        ``[T, 3, 3]``. MediaPipe's image axes are turned into the camera frame (y up, z toward the viewer).
    """
    zero_b = torch.zeros(1, model.n_shape, dtype=lmk3d.dtype, device=lmk3d.device)
    zero_x = torch.zeros(1, 1, model.n_params, dtype=lmk3d.dtype, device=lmk3d.device)
    src = model.head_points(zero_b, zero_x)[0, 0]  # [L,3]
    dst = lmk3d * torch.tensor([1.0, -1.0, -1.0], dtype=lmk3d.dtype, device=lmk3d.device)
    ws = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    ms = torch.einsum("tl,lc->tc", ws, src)
    md = torch.einsum("tl,tlc->tc", ws, dst)
    # cov[t, c, d] = sum_l ws[t, l] (dst − md)[t, l, c] (src − ms)[t, l, d]
    cov = torch.einsum("tl,tlc,tld->tcd", ws, dst - md[:, None], src[None] - ms[:, None])
    return nearest_rotation(cov.double()).to(lmk3d.dtype)


def solve_translation(y: Tensor, obs: Tensor, w: Tensor, intr: Tensor) -> Tensor:
    """Translation putting points ``y`` (camera-frame offsets) onto observed pixels, least squares.

    For each landmark (u, v) under the pinhole camera: f t_x + (u − c_x) t_z = −(u − c_x) y_z − f y_x
    and f t_y − (v − c_y) t_z = (v − c_y) y_z − f y_y (linear in t).

    Args:
        y: ``[N, L, 3]``; obs ``[N, L, 2]``; w ``[N, L]``; intr ``[N, 3]``.

    Returns:
        ``[N, 3]``; rows without enough observations get t = (0, 0, −0.6).
    """
    f, cx, cy = (intr[:, i, None] for i in range(3))
    du, dv = obs[..., 0] - cx, obs[..., 1] - cy
    z0 = torch.zeros_like(du)
    ff = f.expand_as(du)
    a_u = torch.stack([ff, z0, du], -1)  # [N,L,3]
    b_u = -du * y[..., 2] - f * y[..., 0]
    a_v = torch.stack([z0, ff, -dv], -1)
    b_v = dv * y[..., 2] - f * y[..., 1]
    a = torch.cat([a_u, a_v], 1)
    b = torch.cat([b_u, b_v], 1)
    ww = torch.cat([w, w], 1)
    # normal equations: (Aᵀ W A) t = Aᵀ W b
    ata = torch.einsum("nl,nli,nlj->nij", ww, a, a) + 1e-9 * torch.eye(3, dtype=a.dtype, device=a.device)
    atb = torch.einsum("nl,nli,nl->ni", ww, a, b)
    t = torch.linalg.solve(ata.double(), atb.double()[..., None])[..., 0].to(y.dtype)
    enough = (w > 0).sum(-1) >= 3
    bad = ~enough | ~torch.isfinite(t).all(-1) | (t[:, 2] >= -1e-3)
    default = torch.tensor([0.0, 0.0, -0.6], dtype=y.dtype, device=y.device)
    return torch.where(bad[:, None], default, t)


# ---------------------------------------------------------------------------------------------
# pluggable parameter regressor
# ---------------------------------------------------------------------------------------------


@dataclass
class TrackObservation:
    """What an initializer sees of one track (numpy, frame-aligned)."""

    clip_id: str
    track_id: int
    video_id: str
    frame_idx: np.ndarray
    """``[T]`` frame index within the clip."""
    landmarks: np.ndarray
    """``[T, 478, 3]`` MediaPipe landmarks (pixels; NaN when not detected)."""
    detected: np.ndarray
    fps: float
    width: int
    height: int
    out: Path | None = None
    """The run's output root, for a regressor that reads frames through the pipeline's tables."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParamGuess:
    """Seeds from a regressor, in the fitted model's coefficient space (extra columns are dropped,
    missing ones are zero). Any field may be None."""

    shape: np.ndarray | None = None
    """``[S']`` identity."""
    expression: np.ndarray | None = None
    """``[T, E']``."""
    jaw: np.ndarray | None = None
    """``[T, 3]`` axis-angle."""


@runtime_checkable
class ParamRegressor(Protocol):
    """Predicts FLAME parameters of a track from its frames (user-installed model)."""

    def __call__(self, track: TrackObservation) -> ParamGuess | None: ...


def load_regressor(spec: str, args: dict[str, Any] | None = None) -> ParamRegressor:
    """Import ``package.module:factory`` and call ``factory(**args)``; the result must be callable
    as a :class:`ParamRegressor`."""
    if ":" not in spec:
        raise ValueError(f"fit.init.regressor {spec!r} must look like 'package.module:factory'")
    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"fit.init.regressor {spec!r}: cannot import {mod_name!r} ({e}); install the package or unset the option") from None
    factory = getattr(mod, attr, None)
    if factory is None:
        raise ValueError(f"fit.init.regressor {spec!r}: module {mod_name!r} has no {attr!r}")
    reg = factory(**(args or {}))
    if not callable(reg):
        raise ValueError(f"fit.init.regressor {spec!r}: factory returned {type(reg).__name__}, which is not callable")
    return reg
