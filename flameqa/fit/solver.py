"""Batched Gauss-Newton solvers for landmark fitting: pure torch, no I/O, no logging.

Objective of one track (everything is summed per track, never across tracks, so a track's result
does not depend on what else is in the batch):

    C = Σ_t Σ_l w_tl ρ(|uv_tl − obs_tl|² / σ²)                     robust reprojection
      + Σ_t (x_t − μ)ᵀ Λ (x_t − μ) + κ |eye_l − eye_r|²             per-frame priors
      + Σ_t a₁ ⊙ (x_{t+1} − x_t)² + a₂ ⊙ (x_{t+1} − 2x_t + x_{t−1})²  temporal smoothness
      + βᵀ Λ_β β                                                    identity prior

with σ the track's landmark noise scale in pixels and ρ the robust kernel (ρ(s) = s near 0).

Two solvers share it:

- :func:`solve_shape` — identity: keyframes spread over each track, unknowns β plus each
  keyframe's per-frame vector, no smoothness; Gauss-Newton with the keyframe blocks eliminated
  (Schur complement on β).
- :func:`solve_sequence` — tracking: every frame of a chunk, β fixed; the smoothness couples frame
  t to t±1, t±2, so the normal matrix is block-banded (P×P blocks, bandwidth 2, diagonal
  off-diagonal blocks) and is factored exactly by one block-LDLᵀ sweep over time, batched over
  chunks (:func:`banded_cholesky`). The first step forms its normal equations from a landmark subset
  (from MediaPipe's start it is limited by nonlinearity, not noise); a strong smoothness prior is
  reached by continuation from a weak one; optional chord steps reuse the last factor.

The data term's gradient is a pullback of per-landmark covectors (no Jacobian); its Gauss-Newton
matrix JᵀWJ is formed per frame from the row-weighted Jacobian (one batched matrix product). Every
step is followed by a per-track backtracking line search; a track whose step matched the
Gauss-Newton model's predicted decrease (or stopped decreasing) is converged and frozen. All
reductions are per track. Shape letters: B tracks (or chunks), T frames, K keyframes, L landmarks,
P per-frame parameters, S shape coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from flameqa.fit.model import EYE_L, EYE_R, Eval, LandmarkModel, ShapeState

RobustKind = Literal["l2", "huber", "geman_mcclure"]
_EPS_PREC = 1e-6  # tiny precision on every parameter so padded / unobserved blocks stay invertible
_STEPS = (1.0, 0.5, 0.25, 0.125)


@dataclass(frozen=True)
class Objective:
    """Weights of the objective (tensors on the solver's device and dtype).

    Attributes:
        prior_prec: ``[P]`` precision of each per-frame parameter around ``prior_mean`` (0 = free).
        prior_mean: ``[P]``.
        eye_sym: precision of ``eye_left − eye_right`` (eyes move together).
        smooth_vel: ``[P]`` or per track ``[B, 1, P]``: precision of first differences.
        smooth_acc: ``[P]`` or ``[B, 1, P]``: precision of second differences.
        shape_prec: ``[S]`` precision of the identity coefficients around 0.
        robust: kernel of the reprojection term.
        robust_scale: kernel scale, in units of the noise σ (residuals below it count as squared).
    """

    prior_prec: Tensor
    prior_mean: Tensor
    eye_sym: float
    smooth_vel: Tensor
    smooth_acc: Tensor
    shape_prec: Tensor
    robust: RobustKind = "huber"
    robust_scale: float = 3.0
    smooth_robust_scale: float | None = None
    """Huber scale of the acceleration prior, in standard deviations (None: quadratic): small
    accelerations (jitter) cost quadratically, large ones (real motion onsets) only linearly."""


@dataclass
class SolveInfo:
    """Per-track outcome: ``cost [B]``, ``converged [B]`` (bool), ``iterations [B]`` (int), and the
    cost after each iteration (``history``, list of ``[B]``)."""

    cost: Tensor
    converged: Tensor
    iterations: Tensor
    history: list[Tensor] | None = None


# ---------------------------------------------------------------------------------------------
# robust kernel
# ---------------------------------------------------------------------------------------------


def robust_rho(s: Tensor, kind: RobustKind, scale: float) -> Tensor:
    """ρ(s) of squared normalized residuals ``s`` (any shape); ρ(s) ≈ s for s ≪ scale²."""
    c2 = scale * scale
    if kind == "l2":
        return s
    if kind == "huber":
        r = s.clamp_min(0).sqrt()
        return torch.where(s <= c2, s, 2 * scale * r - c2)
    # Geman-McClure: s c² / (s + c²), saturating at c² for outliers
    return s * c2 / (s + c2)


def robust_weight(s: Tensor, kind: RobustKind, scale: float) -> Tensor:
    """dρ/ds: the IRLS weight of each residual."""
    c2 = scale * scale
    if kind == "l2":
        return torch.ones_like(s)
    if kind == "huber":
        return torch.where(s <= c2, torch.ones_like(s), scale / s.clamp_min(c2).sqrt())
    return (c2 / (s + c2)) ** 2


# ---------------------------------------------------------------------------------------------
# cost terms
# ---------------------------------------------------------------------------------------------


def data_cost(
    model: LandmarkModel, st: ShapeState, x: Tensor, intr: Tensor, obs: Tensor, w: Tensor, sigma: Tensor, obj: Objective,
    slice_frames: int = 1024,
) -> Tensor:
    """Robust reprojection cost per frame ``[B, T]``, evaluated ``slice_frames`` frames at a time
    (whole tracks) so temporaries stay small.

    Args: st: the tracks' :class:`ShapeState`; x ``[B, T, P]``; intr ``[B, 3]``; obs ``[B, T, L, 2]``
    pixels (finite); w ``[B, T, L]`` landmark weights (0 = ignore); sigma ``[B]`` noise scale, pixels.
    """
    b, t = x.shape[:2]
    step = max(1, slice_frames // max(t, 1))
    out = []
    for b0 in range(0, b, step):
        sl = slice(b0, b0 + step)
        uv = model.evaluate(st.select(sl), x[sl], intr[sl])
        s = ((uv - obs[sl]) ** 2).sum(-1) / (sigma[sl, None, None] ** 2)
        out.append((w[sl] * robust_rho(s, obj.robust, obj.robust_scale)).sum(-1))
    return torch.cat(out) if len(out) > 1 else out[0]


def prior_cost(x: Tensor, obj: Objective) -> Tensor:
    """Per-frame prior cost ``[B, T]``."""
    d = x - obj.prior_mean
    eye = x[..., EYE_L:EYE_L + 3] - x[..., EYE_R:EYE_R + 3]
    return (obj.prior_prec * d * d).sum(-1) + obj.eye_sym * (eye * eye).sum(-1) + _EPS_PREC * (x * x).sum(-1)


def prior_grad_hess(x: Tensor, obj: Objective) -> tuple[Tensor, Tensor]:
    """Gradient ``[B, T, P]`` and Hessian ``[P, P]`` of :func:`prior_cost` (both halved, as all terms)."""
    g = obj.prior_prec * (x - obj.prior_mean) + _EPS_PREC * x
    eye = x[..., EYE_L:EYE_L + 3] - x[..., EYE_R:EYE_R + 3]
    g = g.clone()
    g[..., EYE_L:EYE_L + 3] += obj.eye_sym * eye
    g[..., EYE_R:EYE_R + 3] -= obj.eye_sym * eye
    h = torch.diag(obj.prior_prec + _EPS_PREC)
    i3 = obj.eye_sym * torch.eye(3, dtype=x.dtype, device=x.device)
    h = h.clone()
    h[EYE_L:EYE_L + 3, EYE_L:EYE_L + 3] += i3
    h[EYE_R:EYE_R + 3, EYE_R:EYE_R + 3] += i3
    h[EYE_L:EYE_L + 3, EYE_R:EYE_R + 3] -= i3
    h[EYE_R:EYE_R + 3, EYE_L:EYE_L + 3] -= i3
    return g, h


def _accel_terms(x: Tensor, m2: Tensor, obj: Objective) -> tuple[Tensor, Tensor, Tensor]:
    """Second differences ``d2 [B, T−2, P]``, their normalized squares and the robust weights."""
    d2 = x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]
    s = obj.smooth_acc * d2 * d2  # (d2 / σ_acc)²
    if obj.smooth_robust_scale is None:
        w = m2[..., None].expand_as(s)
    else:
        w = m2[..., None] * robust_weight(s, "huber", obj.smooth_robust_scale)
    return d2, s, w


def smooth_cost(x: Tensor, m1: Tensor, m2: Tensor, obj: Objective) -> Tensor:
    """Temporal smoothness cost per track ``[B]``: quadratic on velocity, quadratic (or Huber, with
    ``smooth_robust_scale``) on acceleration, both in units of their standard deviations."""
    d1 = x[:, 1:] - x[:, :-1]
    c = (m1[..., None] * obj.smooth_vel * d1 * d1).sum((1, 2))
    _, s, _ = _accel_terms(x, m2, obj)
    if obj.smooth_robust_scale is None:
        return c + (m2[..., None] * s).sum((1, 2))
    return c + (m2[..., None] * robust_rho(s, "huber", obj.smooth_robust_scale)).sum((1, 2))


def smooth_grad(x: Tensor, m1: Tensor, m2: Tensor, obj: Objective, w2: Tensor | None = None) -> Tensor:
    """Half-gradient of :func:`smooth_cost` ``[B, T, P]``: ``D₁ᵀ a₁ D₁ x + D₂ᵀ (a₂ ρ') D₂ x``."""
    d1 = m1[..., None] * obj.smooth_vel * (x[:, 1:] - x[:, :-1])  # [B,T-1,P]
    dd, _, w = _accel_terms(x, m2, obj)
    d2 = (w if w2 is None else w2) * obj.smooth_acc * dd  # [B,T-2,P]
    g = torch.zeros_like(x)
    g[:, 1:] += d1
    g[:, :-1] -= d1
    g[:, 2:] += d2
    g[:, 1:-1] -= 2 * d2
    g[:, :-2] += d2
    return g


def smooth_bands(m1: Tensor, w2: Tensor, obj: Objective, t: int) -> tuple[Tensor, Tensor, Tensor]:
    """The smoothness (IRLS) Hessian as diagonal bands: ``d0 [B, T, P]`` (block diagonal),
    ``c1 [B, T−1, P]`` (block (t+1, t)) and ``c2 [B, T−2, P]`` (block (t+2, t)); each block is a
    diagonal matrix. ``w2 [B, T−2, P]``: weight of each acceleration term (mask × robust weight)."""
    a1 = m1[..., None] * obj.smooth_vel  # [B,T-1,P]
    a2 = w2 * obj.smooth_acc  # [B,T-2,P]
    b, p = m1.shape[0], obj.smooth_vel.shape[-1]
    d0 = torch.zeros(b, t, p, dtype=a1.dtype, device=a1.device)
    d0[:, 1:] += a1
    d0[:, :-1] += a1
    d0[:, :-2] += a2
    d0[:, 1:-1] += 4 * a2
    d0[:, 2:] += a2
    c1 = -a1.expand(b, t - 1, p).clone()
    c1[:, :-1] -= 2 * a2  # pair (k, k+1) of triple k
    c1[:, 1:] -= 2 * a2  # pair (k+1, k+2) of triple k
    return d0, c1, a2


# ---------------------------------------------------------------------------------------------
# block-banded Cholesky (bandwidth 2, diagonal off-diagonal blocks in the input)
# ---------------------------------------------------------------------------------------------


@dataclass
class BandedFactor:
    """Block LDLᵀ of a block-banded matrix: ``dinv[t] = D_t⁻¹`` (inverse Schur complements) and
    ``f[t] = D_{t−1}⁻¹ E_{t,t−1}ᵀ`` so that ``L[t,t−1] = f[t]ᵀ`` and ``L[t,t−2] = diag(c2) D_{t−2}⁻¹``."""

    dinv: list[Tensor]
    f: list[Tensor | None]
    c2: Tensor


def banded_cholesky(d: Tensor, c1: Tensor, c2: Tensor) -> tuple[BandedFactor, Tensor]:
    """Factor the symmetric block-banded matrix H = L D Lᵀ (L unit lower) by one sweep over time.

    H has diagonal blocks ``d [B, T, P, P]`` and diagonal off-diagonal blocks: ``c1 [B, T−1, P]``
    (block (t+1, t)) and ``c2 [B, T−2, P]`` (block (t+2, t)). With E_{t+1,t} the block (t+1, t) of
    L D (= H_{t+1,t} − diag(c2_{t−1}) D_{t−1}⁻¹ E_{t,t−1}ᵀ) the Schur complements are
    D_t = H_tt − E_{t,t−1} D_{t−1}⁻¹ E_{t,t−1}ᵀ − diag(c2) D_{t−2}⁻¹ diag(c2): two matrix products,
    a Cholesky and its inverse per step, batched over B.

    Returns:
        the factor and ``info [B]`` (nonzero where a Schur complement was not positive definite).
    """
    b, t, p, _ = d.shape
    dinv: list[Tensor] = []
    f: list[Tensor | None] = [None] * t
    info = torch.zeros(b, dtype=torch.int32, device=d.device)
    e_prev: Tensor | None = None  # E_{k,k−1}
    for k in range(t):
        s = d[:, k]
        if e_prev is not None:
            s = s - e_prev @ f[k]
        if k >= 2:
            s = s - c2[:, k - 2, :, None] * dinv[k - 2] * c2[:, k - 2, None, :]
        lk, inf = torch.linalg.cholesky_ex(s)
        info = info | inf
        dk = torch.cholesky_inverse(lk)
        dinv.append(dk)
        if k + 1 < t:
            e = torch.diag_embed(c1[:, k])
            if k >= 1:
                e = e - c2[:, k - 1, :, None] * f[k]
            f[k + 1] = dk @ e.transpose(-1, -2)
            e_prev = e
    return BandedFactor(dinv, f, c2), info


def banded_solve(fac: BandedFactor, rhs: Tensor) -> Tensor:
    """Solve ``L D Lᵀ x = rhs`` for ``rhs [B, T, P]``: forward substitution, scaling, back substitution."""
    t = rhs.shape[1]
    c2 = fac.c2
    y: list[Tensor] = []
    for k in range(t):
        v = rhs[:, k, :, None]
        if k >= 1:
            v = v - fac.f[k].transpose(-1, -2) @ y[k - 1]
        if k >= 2:
            v = v - c2[:, k - 2, :, None] * (fac.dinv[k - 2] @ y[k - 2])
        y.append(v)
    x: list[Tensor] = [rhs[:, 0, :, None]] * t
    for k in range(t - 1, -1, -1):
        v = y[k]
        if k + 2 < t:
            v = v - c2[:, k, :, None] * x[k + 2]
        v = fac.dinv[k] @ v
        if k + 1 < t:
            v = v - fac.f[k + 1] @ x[k + 1]
        x[k] = v
    return torch.stack([xk[..., 0] for xk in x], dim=1)


# ---------------------------------------------------------------------------------------------
# normal equations of the data term
# ---------------------------------------------------------------------------------------------


def frame_gram(ja: Tensor, jb: Tensor, out: Tensor | None = None) -> Tensor:
    """Per-frame ``Σ_rows J_aᵀ J_b`` ``[B·T, Pa, Pb]`` of Jacobians ``[B, T, L, 2, P]`` (into ``out``)."""
    b, t, nl = ja.shape[:3]
    a = ja.reshape(b * t, nl * 2, -1)
    # G[n, p, q] = sum_i A[n, i, p] B[n, i, q]
    if out is None:
        return a.transpose(1, 2) @ jb.reshape(b * t, nl * 2, -1)
    return torch.bmm(a.transpose(1, 2), jb.reshape(b * t, nl * 2, -1), out=out.view(b * t, a.shape[-1], -1))


def _data_normal(
    model: LandmarkModel, ev: Eval, obs: Tensor, w: Tensor, sigma: Tensor, obj: Objective, *, hessian: bool, shape: bool = False,
    plain: bool = False, work: dict[str, Tensor] | None = None, hxx_out: Tensor | None = None,
) -> dict[str, Tensor]:
    """IRLS gradient (and Gauss-Newton Hessian) of the data term at an evaluation.

    All terms are halved consistently (cost = Σ w ρ, gradient = Σ w ρ' Jᵀ r, Hessian = Σ w ρ' JᵀJ).
    The gradient is a pullback of per-landmark covectors (no Jacobian formed); the Hessian forms
    the row-weighted Jacobian once and multiplies it by itself per frame. ``plain``: least squares
    weights (no robust down-weighting), for a first step from a start whose residuals are not yet
    noise: robust weights there would reflect the start, not outliers.
    """
    inv = 1.0 / sigma[:, None, None]  # [B,1,1]
    r = (ev.uv - obs) * inv[..., None]  # [B,T,L,2]
    s = (r * r).sum(-1)
    wr = w if plain else w * robust_weight(s, obj.robust, obj.robust_scale)  # [B,T,L]
    out = {"cost": (w * robust_rho(s, obj.robust, obj.robust_scale)).sum(-1)}
    # covector per landmark in the camera frame: dPᵀ (w ρ' r / σ)
    cov = (ev.dp * ((wr * inv)[..., None] * r)[..., None]).sum(-2)  # [B,T,L,3]
    out["gx"] = model.pullback(ev, cov)
    if shape:
        out["gb_t"] = cov
    if hessian:
        rs = wr.clamp_min(0).sqrt() * inv  # row scale √(w ρ') / σ
        b, t = r.shape[:2]
        work = {} if work is None else work
        jac = model.jacobian(ev, rs, out=work.get("jac"))  # [B, T, L, 2, P]
        work["jac"] = jac if work.get("jac") is None or work["jac"].numel() < jac.numel() else work["jac"]
        out["hxx"] = frame_gram(jac, jac, out=hxx_out).reshape(b, t, jac.shape[-1], jac.shape[-1])
        if shape:
            jb = model.shape_jacobian(ev, rs, out=work.get("jb"))  # [B, T, L, 2, S]
            work["jb"] = jb if work.get("jb") is None or work["jb"].numel() < jb.numel() else work["jb"]
            out["hxb"] = frame_gram(jac, jb).reshape(b, t, jac.shape[-1], -1)
            out["hbb"] = frame_gram(jb, jb).reshape(b, t, jb.shape[-1], -1).sum(1)  # summed over keyframes
    return out


def _assemble(
    model: LandmarkModel, st: ShapeState, x: Tensor, intr: Tensor, obs: Tensor, w: Tensor, sigma: Tensor, obj: Objective,
    *, hessian: bool, shape: bool = False, slice_frames: int = 1024, plain: bool = False,
) -> dict[str, Tensor]:
    """:func:`_data_normal` over slices of the batch (whole tracks), so the Jacobian of at most
    ``slice_frames`` frames exists at a time; the per-track results are concatenated."""
    b, t, p = x.shape
    step = max(1, slice_frames // max(t, 1))
    work: dict[str, Tensor] = {}
    # the whole batch's Hessian blocks, written slice by slice (no concatenation copies)
    hxx = x.new_empty(b, t, p, p) if hessian else None
    parts: list[dict[str, Tensor]] = []
    for b0 in range(0, b, step):
        sl = slice(b0, b0 + step)
        ev = model.evaluate(st.select(sl), x[sl], intr[sl], derivatives=True)
        ne = _data_normal(
            model, ev, obs[sl], w[sl], sigma[sl], obj, hessian=hessian, shape=shape, plain=plain, work=work,
            hxx_out=None if hxx is None else hxx[sl],
        )
        if shape:
            ne["gb"] = model.shape_pullback(ev, ne.pop("gb_t"))
        ne.pop("hxx", None)
        parts.append(ne)
    out = {k: torch.cat([q[k] for q in parts]) if len(parts) > 1 else parts[0][k] for k in parts[0]}
    if hxx is not None:
        out["hxx"] = hxx
    return out


def _scaled_cholesky_solve(h: Tensor, g: Tensor) -> Tensor:
    """Solve ``h z = g`` for SPD ``h [..., n, n]``, ``g [..., n, m]`` with Jacobi scaling."""
    dsc = h.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30).rsqrt()
    hs = h * dsc[..., :, None] * dsc[..., None, :]
    lk, _ = torch.linalg.cholesky_ex(hs)
    return dsc[..., :, None] * torch.cholesky_solve(dsc[..., :, None] * g, lk)


# ---------------------------------------------------------------------------------------------
# identity: keyframes + shared shape
# ---------------------------------------------------------------------------------------------


def solve_shape(
    model: LandmarkModel,
    beta: Tensor,
    x: Tensor,
    obs: Tensor,
    w: Tensor,
    intr: Tensor,
    sigma: Tensor,
    obj: Objective,
    *,
    n_iter: int = 4,
    damping: float = 1e-4,
    tol: float = 1e-3,
    slice_frames: int = 1024,
) -> tuple[Tensor, Tensor, SolveInfo]:
    """Fit identity β and the keyframes' per-frame parameters jointly.

    Args:
        beta: ``[B, S]`` start; x: ``[B, K, P]`` keyframe start; obs ``[B, K, L, 2]``; w ``[B, K, L]``
        (padded keyframes have weight 0); intr ``[B, 3]``; sigma ``[B]``.

    Returns:
        beta ``[B, S]``, x ``[B, K, P]``, :class:`SolveInfo`.
    """
    bsz = beta.shape[0]

    def total(beta_: Tensor, x_: Tensor) -> Tensor:
        c = data_cost(model, model.shape_state(beta_), x_, intr, obs, w, sigma, obj).sum(1) + prior_cost(x_, obj).sum(1)
        return c + (obj.shape_prec * beta_ * beta_).sum(-1)

    cost = total(beta, x)
    active = torch.ones(bsz, dtype=torch.bool, device=beta.device)
    converged = torch.zeros(bsz, dtype=torch.bool, device=beta.device)
    iters = torch.zeros(bsz, dtype=torch.int32, device=beta.device)
    history = [cost]
    for _ in range(n_iter):
        ne = _assemble(model, model.shape_state(beta), x, intr, obs, w, sigma, obj, hessian=True, shape=True, slice_frames=slice_frames)
        gp, hp = prior_grad_hess(x, obj)
        gx = ne["gx"] + gp  # [B,K,P]
        hxx = ne["hxx"] + hp
        hxx = hxx + damping * torch.diag_embed(hxx.diagonal(dim1=-2, dim2=-1))
        gb = ne["gb"] + obj.shape_prec * beta  # [B,S]
        hbb = ne["hbb"] + torch.diag(obj.shape_prec + _EPS_PREC)
        hbb = hbb + damping * torch.diag_embed(hbb.diagonal(dim1=-2, dim2=-1))
        hxb = ne["hxb"]  # [B,K,P,S]
        # eliminate the keyframes: Y = Hxx⁻¹ [Hxb | gx]
        y = _scaled_cholesky_solve(hxx, torch.cat([hxb, gx[..., None]], dim=-1))  # [B,K,P,S+1]
        # schur[b] = Hbb − sum_k Hxbᵀ Hxx⁻¹ Hxb;  rb = gb − sum_k Hxbᵀ Hxx⁻¹ gx
        red = torch.einsum("bkps,bkpm->bsm", hxb, y)
        schur = hbb - red[..., :-1]
        rb = gb - red[..., -1]
        db = -_scaled_cholesky_solve(schur.double(), rb.double()[..., None])[..., 0].to(beta.dtype)
        # dx_k = −Hxx⁻¹ (gx + Hxb db)
        dx = -(y[..., -1] + torch.einsum("bkps,bs->bkp", y[..., :-1], db))
        prev = cost
        beta, x, cost, alpha, iters = _line_search(total, beta, x, db, dx, cost, active, iters)
        accepted = alpha > 0
        history.append(cost)
        rel = (prev - cost) / prev.abs().clamp_min(1e-30)
        done = active & (~accepted | (rel <= tol))
        converged |= done
        active &= ~done
        if not bool(active.any()):
            break
    return beta, x, SolveInfo(cost, converged, iters, history)


def _line_search(total, beta, x, db, dx, cost, active, iters):
    """Per-track backtracking: take the largest step in ``_STEPS`` that lowers the track's cost.

    Returns the new (beta, x, cost), the step length taken (0: none accepted) and the per-track
    iteration counts."""
    am = active.to(x.dtype)
    accepted = torch.zeros_like(active)
    alpha = torch.zeros_like(cost)
    new_beta, new_x, new_cost = beta, x, cost
    for a in _STEPS:
        cand_b = beta + (a * am)[:, None] * db if db is not None else beta
        cand_x = x + (a * am).reshape(-1, *([1] * (x.dim() - 1))) * dx
        c = total(cand_b, cand_x)
        ok = active & ~accepted & torch.isfinite(c) & (c <= cost)
        new_beta = torch.where(ok[:, None], cand_b, new_beta) if db is not None else beta
        new_x = torch.where(ok.reshape(-1, *([1] * (x.dim() - 1))), cand_x, new_x)
        new_cost = torch.where(ok, c, new_cost)
        alpha = torch.where(ok, torch.full_like(alpha, a), alpha)
        accepted = accepted | ok
        if bool((accepted | ~active).all()):
            break
    iters = iters + active.to(iters.dtype)
    return new_beta, new_x, new_cost, alpha, iters


# ---------------------------------------------------------------------------------------------
# tracking: all frames of a chunk, shape fixed
# ---------------------------------------------------------------------------------------------


def solve_sequence(
    model: LandmarkModel,
    beta: Tensor,
    x: Tensor,
    obs: Tensor,
    w: Tensor,
    frame_mask: Tensor,
    intr: Tensor,
    sigma: Tensor,
    obj: Objective,
    *,
    n_full: int = 2,
    n_chord: int = 0,
    damping: float = 1e-4,
    tol: float = 1e-3,
    slice_frames: int = 1024,
    coarse: tuple[LandmarkModel, Tensor] | None = None,
    warm: Objective | None = None,
    n_warm: int = 0,
    hess_subset: tuple[LandmarkModel, Tensor] | None = None,
) -> tuple[Tensor, SolveInfo]:
    """Fit every frame's parameters of a batch of chunks with temporal smoothness, β fixed.

    Args:
        beta: ``[B, S]``; x: ``[B, T, P]`` start (padded frames: any finite values);
        obs ``[B, T, L, 2]``; w ``[B, T, L]`` (0 for missing landmarks / frames / padding);
        frame_mask ``[B, T]`` 1 for the chunk's real frames (observed or not), 0 for padding;
        intr ``[B, 3]``; sigma ``[B]``.
        n_full: iterations that relinearize and refactor; n_chord: iterations after them that reuse
            the last factor with a fresh gradient (a failed chord step triggers one more full one).
        tol: a chunk has converged when an iteration lowers its cost by less than this fraction.
        coarse: (model restricted to a landmark subset, its rows): the first iteration's normal
            equations use only those landmarks (a cheap step from a rough start); the line search
            and every later iteration use all of them.
        warm, n_warm: the first ``n_warm`` iterations minimize ``warm`` (a weaker temporal prior)
            instead of ``obj``: a continuation. From MediaPipe's start, Gauss-Newton under a strong
            smoothness prior creeps along the valley between motion and misfit; converged under a
            weak prior first, one step under the strong prior lands next to its optimum.

    Returns:
        x ``[B, T, P]`` and :class:`SolveInfo`. Padded frames keep their start values.
    """
    bsz, t, p = x.shape
    fm = frame_mask.to(x.dtype)
    m1, m2 = fm[:, 1:] * fm[:, :-1], fm[:, 2:] * fm[:, 1:-1] * fm[:, :-2]
    st = model.shape_state(beta)
    target = obj
    if warm is None:
        n_warm = 0
    obj = warm if n_warm > 0 else target

    def total(_b: Tensor | None, x_: Tensor) -> Tensor:
        c = (data_cost(model, st, x_, intr, obs, w, sigma, obj, slice_frames) + prior_cost(x_, obj) * fm).sum(1)
        return c + smooth_cost(x_, m1, m2, obj)

    cost = total(None, x)
    active = torch.ones(bsz, dtype=torch.bool, device=x.device)
    converged = torch.zeros(bsz, dtype=torch.bool, device=x.device)
    iters = torch.zeros(bsz, dtype=torch.int32, device=x.device)
    factor, scale = None, None
    history = [cost]
    budget = n_full + n_chord
    it, extra_full = 0, 0
    force_full = False
    while it < budget:
        if it >= n_warm and obj is not target:  # switch to the target objective
            obj = target
            cost = total(None, x)
            active = torch.ones_like(active)
            converged = torch.zeros_like(converged)
            force_full = True
        full = it < n_full or factor is None or force_full
        if coarse is not None and it == 0:
            cm, rows = coarse
            ne = _assemble(cm, cm.shape_state(beta), x, intr, obs[:, :, rows], w[:, :, rows], sigma, obj, hessian=True, slice_frames=slice_frames, plain=True)
        elif hess_subset is not None and full and it > 0:
            # inexact Newton: exact gradient from every landmark, Hessian from a spread subset
            # rescaled by the weight it stands for
            hm, rows = hess_subset
            ne = _assemble(model, st, x, intr, obs, w, sigma, obj, hessian=False, slice_frames=slice_frames)
            hs_ = _assemble(hm, hm.shape_state(beta), x, intr, obs[:, :, rows], w[:, :, rows], sigma, obj, hessian=True, slice_frames=slice_frames)
            ratio = w.sum(-1) / w[:, :, rows].sum(-1).clamp_min(1e-12)  # [B,T]
            ne["hxx"] = hs_["hxx"].mul_(ratio[..., None, None])
        else:
            ne = _assemble(model, st, x, intr, obs, w, sigma, obj, hessian=full, slice_frames=slice_frames, plain=it == 0)
        gp, hp = prior_grad_hess(x, obj)
        if full:
            _, _, w2 = _accel_terms(x, m2, obj)  # IRLS weights of the acceleration prior
        g = ne["gx"] + gp * fm[..., None] + smooth_grad(x, m1, m2, obj)
        if full:
            d0, c1, c2 = smooth_bands(m1, w2, obj, t)
            # H = data + prior (real frames) + smoothness diagonal, assembled in place
            h = ne["hxx"]
            h.addcmul_(hp, fm[..., None, None])
            diag = h.diagonal(dim1=-2, dim2=-1)
            diag.add_(d0 + _EPS_PREC * (1 - fm)[..., None])
            diag.mul_(1 + damping)
            # Jacobi scaling of the whole banded system: H̃ = S H S, S = diag(H)^(-1/2)
            scale = diag.clamp_min(1e-30).rsqrt()  # [B,T,P]
            hs = h.mul_(scale[..., :, None]).mul_(scale[..., None, :])
            factor, _info = banded_cholesky(hs, c1 * scale[:, 1:] * scale[:, :-1], c2 * scale[:, 2:] * scale[:, :-2])
        dx = -scale * banded_solve(factor, scale * g)
        dx = torch.where(torch.isfinite(dx), dx, torch.zeros_like(dx)) * fm[..., None]
        # decrease the quadratic model predicts for the full step. With cost C = Σ r² (no ½) and g, H
        # its half-gradient and half-Hessian, C(x + δ) ≈ C + 2gᵀδ + δᵀHδ, so the Newton step
        # δ = −H⁻¹g lowers it by gᵀH⁻¹g = −g·δ
        predicted = -(g * dx).sum((1, 2))
        prev = cost
        _, x, cost, alpha, iters = _line_search(total, None, x, None, dx, cost, active, iters)
        accepted = alpha > 0
        history.append(cost)
        rel = (prev - cost) / prev.abs().clamp_min(1e-30)
        # done: a small decrease; or a full step whose actual decrease the quadratic model predicted
        # to within tol of the cost (the model's minimum, where the step landed, is then within that
        # of the true one); or no decrease along a full Newton direction (at the optimum)
        agree = (alpha == 1.0) & ((prev - cost - predicted).abs() <= tol * cost.abs()) & (coarse is None or it > 0)
        done = active & ((accepted & ((rel <= tol) | agree)) | (~accepted & full))
        converged |= done
        active &= ~done
        force_full = bool((active & ~accepted).any())  # a stale factor failed: refactor next
        it += 1
        if force_full and it >= budget and extra_full < 1:
            budget += 1
            extra_full += 1
        if not bool(active.any()):
            if obj is not target:  # converged under the warm prior: go on to the target
                it = n_warm
                continue
            break
    return x, SolveInfo(cost, converged, iters, history)
