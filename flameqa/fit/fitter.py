"""Fit many face tracks at once: inputs → identity → chunked tracking → stitching → quality figures.

:class:`Fitter` turns per-track numpy arrays (MediaPipe landmarks, detection flags, transformation
matrices) into per-track FLAME parameters. It owns the batching and bookkeeping around the pure
solvers of :mod:`flameqa.fit.solver`:

1. Observations: the model's landmarks are picked out of MediaPipe's 478; NaN/Inf landmarks and
   frames that are not detected (or score too low) get weight 0 and their values are replaced by 0
   before any tensor reaches the solver. Each track's noise scale is ``noise_iod`` × its median
   inter-ocular distance (IOD), so weights do not depend on resolution.
2. Initialization (:mod:`flameqa.fit.init`): rotation from MediaPipe's matrices, translation by
   linear least squares, nearest-frame fill for frames without a face.
3. Identity: keyframes spread over each track, Gauss-Newton on β + keyframe parameters.
4. Tracking: tracks are cut into chunks (``chunk_frames``, overlapping by ``chunk_overlap``), chunks
   of all tracks are packed into padded batches and solved with temporal smoothness; overlapping
   chunks are cross-faded over the middle half of their overlap, where both solutions agree.
5. Figures per frame (``fit_rmse_px``, ``nme``, ``valid``) and per track (``jitter_ratio``,
   ``converged``, ``iterations``).

A track's result depends only on that track: every reduction in the solvers is per track/chunk, and
the packing of chunks into batches is padding that the solvers mask out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from flameqa.fit.camera import PinholeCamera
from flameqa.fit.config import FitConfig, SmoothConfig
from flameqa.fit.init import (
    ParamGuess,
    Similarity,
    fill_nearest,
    matrix_to_axis_angle,
    rotation_from_landmarks,
    rotation_from_transform,
    solve_translation,
)
from flameqa.fit.model import EXPR, JAW, ROT, TRANSL, LandmarkModel, rodrigues
from flameqa.fit.solver import Objective, solve_sequence, solve_shape

log = logging.getLogger(__name__)

#: MediaPipe face-oval (silhouette) landmarks.
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284, 288,
             297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)  # fmt: skip
#: Oval points on the chin: they follow the jaw and stay on the surface, so they keep full weight.
CHIN = (148, 149, 152, 176, 377, 378, 400)
IRIS = tuple(range(468, 478))
#: Outer eye corners: the inter-ocular distance of the NME.
IOD_PAIR = (33, 263)


@dataclass
class TrackData:
    """One face track, frame-aligned numpy arrays (T frames)."""

    landmarks: np.ndarray
    """``[T, 478, 3]`` MediaPipe landmarks, pixels (x, y) and relative depth; NaN when missing."""
    detected: np.ndarray
    """``[T]`` bool."""
    width: int
    height: int
    fps: float = 25.0
    det_score: np.ndarray | None = None
    """``[T]`` face presence score (NaN when not detected)."""
    transform: np.ndarray | None = None
    """``[T, 4, 4]`` MediaPipe facial transformation matrices, NaN when missing."""
    guess: ParamGuess | None = None
    """Optional seeds from a parameter regressor."""
    focal_px: float | None = None
    """A known focal length for this track's video (overrides the config)."""
    identity: Any = None
    """Tracks with the same (non-None) identity key share one shape (e.g. runs of one face track
    separated by a gap); they must come from the same video (same camera)."""

    @property
    def n_frames(self) -> int:
        return int(self.landmarks.shape[0])


@dataclass
class TrackFit:
    """Result for one track. ``params [T, P]`` in the model's per-frame layout (see flameqa.fit.model)."""

    shape: np.ndarray
    params: np.ndarray
    valid: np.ndarray
    fit_rmse_px: np.ndarray
    nme: np.ndarray
    jitter_ratio: float | None
    converged: bool
    iterations: int
    camera: PinholeCamera
    status: str = "ok"
    error: str | None = None
    raw_accel_px: float | None = None
    """Mean |second difference| of the observed landmarks, pixels (denominator of the jitter ratio)."""
    fit_accel_px: float | None = None
    uv: np.ndarray | None = None
    """``[T, L, 2]`` fitted landmarks, pixels."""
    obs: np.ndarray | None = None
    """``[T, L, 2]`` observed landmarks (0 where missing)."""
    obs_ok: np.ndarray | None = None
    """``[T, L]`` observed and detected."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def global_pose(self) -> np.ndarray:
        return self.params[:, ROT:ROT + 3]

    @property
    def transl(self) -> np.ndarray:
        return self.params[:, TRANSL:TRANSL + 3]

    @property
    def jaw(self) -> np.ndarray:
        return self.params[:, JAW:JAW + 3]

    @property
    def eyes(self) -> np.ndarray:
        return self.params[:, JAW + 3:EXPR]

    @property
    def expression(self) -> np.ndarray:
        return self.params[:, EXPR:]


def build_objective(cfg: FitConfig, model: LandmarkModel, fps: Tensor | None = None) -> Objective:
    """Config → solver weights (precisions = 1 / std²). ``fps [B]`` rescales smoothness per track."""
    dev, dt = model.device, model.dtype
    p, e = model.n_params, model.n_expr
    pr, sm = cfg.prior, cfg.smooth
    prec = torch.zeros(p, dtype=dt, device=dev)
    prec[JAW] = 1 / pr.jaw_open_std**2
    prec[JAW + 1:JAW + 3] = 1 / pr.jaw_side_std**2
    prec[JAW + 3:EXPR] = 1 / pr.eyes_std**2
    prec[EXPR:] = 1 / pr.expression_std**2
    acc = torch.empty(p, dtype=dt, device=dev)
    a_rot, a_tr, a_jaw, a_eye, a_ex = sm.accelerations()
    acc[ROT:ROT + 3] = a_rot
    acc[TRANSL:TRANSL + 3] = a_tr
    acc[JAW:JAW + 3] = a_jaw
    acc[JAW + 3:EXPR] = a_eye
    acc[EXPR:] = a_ex
    if fps is None:
        ratio = torch.ones(1, 1, 1, dtype=dt, device=dev)
    else:
        ratio = (sm.reference_fps / fps.to(dt)).reshape(-1, 1, 1)
    acc_std = acc * ratio**2
    vel_std = acc * sm.vel_factor * ratio
    return Objective(
        prior_prec=prec,
        prior_mean=torch.zeros(p, dtype=dt, device=dev),
        eye_sym=1 / pr.eyes_sym_std**2,
        smooth_vel=1 / vel_std**2,
        smooth_acc=1 / acc_std**2,
        shape_prec=torch.full((model.n_shape,), 1 / pr.shape_std**2, dtype=dt, device=dev),
        robust=cfg.data.robust,
        robust_scale=cfg.data.robust_scale,
        smooth_robust_scale=sm.robust_scale,
    )


def chunk_ranges(t: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Chunks ``[start, end)`` covering ``range(t)``: as few as fit in ``size`` frames with at least
    ``overlap`` frames shared by neighbours, all of (nearly) equal length and evenly spread."""
    if t <= size:
        return [(0, t)]
    if not 0 <= overlap < size:
        raise ValueError(f"chunk_overlap={overlap} must be in [0, chunk_frames={size})")
    n = -(-(t - overlap) // (size - overlap))  # ceil
    length = min(size, -(-(t + (n - 1) * overlap) // n))
    starts = np.round(np.linspace(0, t - length, n)).astype(int)
    return [(int(s), int(s) + length) for s in starts]


def stitch(chunks: list[tuple[int, int]], values: list[np.ndarray], t: int) -> np.ndarray:
    """Join per-chunk arrays ``[len, ...]`` into ``[t, ...]``: inside an overlap, a smooth ramp over its
    middle half hands over from the earlier chunk to the later one (both ends of an overlap are
    near a chunk boundary, where the smoothness prior has the least support)."""
    out = np.zeros((t, *values[0].shape[1:]), dtype=values[0].dtype)
    out[chunks[0][0]:chunks[0][1]] = values[0]
    for (s, e), v, (_, prev_e) in zip(chunks[1:], values[1:], chunks[:-1]):
        ov = prev_e - s
        frames = np.arange(s, e)
        w = np.ones(e - s)
        if ov > 0:
            lo, hi = s + ov / 4.0, prev_e - ov / 4.0
            u = np.clip((frames - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
            w = u * u * (3 - 2 * u)  # smoothstep
            w[frames >= prev_e] = 1.0
        w = w.reshape(-1, *([1] * (v.ndim - 1)))
        out[s:e] = (1 - w) * out[s:e] + w * v
    return out


@dataclass
class _Prepared:
    """A track turned into solver inputs (numpy, model landmark order)."""

    obs: np.ndarray  # [T,L,2] finite (0 where missing)
    w: np.ndarray  # [T,L] base weights × finite × detected × score
    detected: np.ndarray  # [T] effective detection
    lmk3d: np.ndarray  # [T,L,3] finite
    iod: np.ndarray  # [T] per-frame IOD (track median where missing)
    sigma: float
    camera: PinholeCamera


class Fitter:
    """Batched FLAME fitting of face tracks.

    Args:
        model: landmark-restricted model (built from a FlameLayer).
        config: the fit config.
        device: torch device for the solve.
        align: canonical-mesh → model similarity (None: rotations from landmarks only).
    """

    def __init__(self, model: LandmarkModel, config: FitConfig, device: str | torch.device = "cpu", align: Similarity | None = None) -> None:
        self.cfg = config
        self.device = torch.device(device)
        self.model = model.to(self.device, torch.float32)
        self.align = align
        mp = self.model.mp_indices.cpu().numpy()
        self.mp = mp
        base = np.full(len(mp), config.data.weight_other, np.float32)
        base[np.isin(mp, FACE_OVAL) & ~np.isin(mp, CHIN)] = config.data.weight_oval
        base[np.isin(mp, IRIS)] = config.data.weight_iris
        self.base_w = base
        self.is_oval = torch.as_tensor(np.isin(mp, FACE_OVAL) & ~np.isin(mp, CHIN), device=self.device)
        n_id = min(self.model.n_landmarks, max(4, config.solver.shape_landmarks))
        self.id_rows = np.unique(np.round(np.linspace(0, self.model.n_landmarks - 1, n_id)).astype(np.int64))
        self.id_model = self.model.subset(self.id_rows)
        n_c = min(self.model.n_landmarks, max(4, config.solver.coarse_landmarks))
        self.coarse_rows = np.unique(np.round(np.linspace(0, self.model.n_landmarks - 1, n_c)).astype(np.int64))
        self.coarse = (self.model.subset(self.coarse_rows), torch.as_tensor(self.coarse_rows, device=self.device)) if n_c < self.model.n_landmarks else None
        self.hess_subset = None
        if config.solver.hessian_landmarks is not None and config.solver.hessian_landmarks < self.model.n_landmarks:
            hr = np.unique(np.round(np.linspace(0, self.model.n_landmarks - 1, max(4, config.solver.hessian_landmarks))).astype(np.int64))
            self.hess_subset = (self.model.subset(hr), torch.as_tensor(hr, device=self.device))
        bf = config.solver.batch_frames
        self.batch_frames = bf if bf is not None else (65536 if self.device.type == "cuda" else 8192)
        sf = config.solver.slice_frames
        self.slice_frames = sf if sf is not None else (16384 if self.device.type == "cuda" else 1024)

    # ------------------------------------------------------------------------------------------
    def fit(self, tracks: list[TrackData], progress: Callable[[int], None] | None = None) -> list[TrackFit]:
        """Fit every track; a track without any detected frame comes back with status ``failed``."""
        with torch.inference_mode():
            return self._fit(tracks, progress)

    def _prepare(self, tr: TrackData) -> _Prepared:
        dc = self.cfg.data
        lm = np.asarray(tr.landmarks, np.float32)
        t = lm.shape[0]
        if lm.shape[1:] != (478, 3):
            raise ValueError(f"track landmarks must be [T, 478, 3], got {lm.shape}")
        pts = lm[:, self.mp]  # [T,L,3]
        finite = np.isfinite(pts).all(-1)
        det = np.asarray(tr.detected, bool).copy()
        if tr.det_score is not None:
            sc = np.asarray(tr.det_score, np.float32)
            det &= ~(np.isfinite(sc) & (sc < dc.min_det_score))
            score = np.where(np.isfinite(sc), np.clip(sc, 0.0, 1.0), 1.0)
        else:
            score = np.ones(t, np.float32)
        det &= finite.mean(1) >= dc.min_landmarks
        w = self.base_w[None] * finite * det[:, None] * score[:, None]
        obs = np.where(finite[..., None], pts, 0.0).astype(np.float32)
        a, b = lm[:, IOD_PAIR[0], :2], lm[:, IOD_PAIR[1], :2]
        with np.errstate(invalid="ignore"):
            iod = np.linalg.norm(a - b, axis=-1)
        ok = np.isfinite(iod) & det & (iod > 0)
        if not ok.any() and det.any():
            # eye corners not observed (a landmark set without them): 0.6 × the face's width instead
            with np.errstate(invalid="ignore"):
                span = np.nanmax(np.where(finite, pts[..., 0], np.nan), 1) - np.nanmin(np.where(finite, pts[..., 0], np.nan), 1)
            iod = np.where(det, 0.6 * span, np.nan)
            ok = np.isfinite(iod) & det & (iod > 0)
        med = float(np.median(iod[ok])) if ok.any() else float("nan")
        iod = np.where(ok, iod, med)
        if tr.focal_px is not None:
            cam = PinholeCamera.from_focal(tr.width, tr.height, tr.focal_px)
        elif self.cfg.camera.focal_px is not None:
            cam = PinholeCamera.from_focal(tr.width, tr.height, self.cfg.camera.focal_px)
        else:
            cam = PinholeCamera.from_vfov(tr.width, tr.height, self.cfg.camera.vfov_deg)
        return _Prepared(obs[..., :2], w.astype(np.float32), det, obs, iod.astype(np.float32), dc.noise_iod * med, cam)

    def _tensor(self, a: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.as_tensor(a, dtype=dtype, device=self.device)

    def _fit(self, tracks: list[TrackData], progress: Callable[[int], None] | None) -> list[TrackFit]:
        model, cfg = self.model, self.cfg
        prep = [self._prepare(t) for t in tracks]
        results: list[TrackFit | None] = [None] * len(tracks)
        live = []
        for i, (tr, pp) in enumerate(zip(tracks, prep)):
            if not pp.detected.any() or not math.isfinite(pp.sigma) or pp.sigma <= 0:
                results[i] = self._failed(tr, pp, "no detected face in any frame")
            else:
                live.append(i)
        if not live:
            return [r for r in results if r is not None]

        # --- initialization (per track; cheap, O(T·L)) ---
        x0: dict[int, Tensor] = {}
        for i in live:
            x0[i] = self._init_rigid(tracks[i], prep[i])

        # --- identity: keyframes of each track ---
        betas = self._fit_shapes(live, tracks, prep, x0)

        # --- tracking: chunks of all tracks, packed into padded batches ---
        pieces: list[tuple[int, int, int]] = []  # (track, start, end)
        for i in live:
            for s, e in chunk_ranges(tracks[i].n_frames, cfg.solver.chunk_frames, cfg.solver.chunk_overlap):
                pieces.append((i, s, e))
        for i in live:  # translation/expression start values with the fitted identity
            x0[i] = self._init_transl(x0[i], betas[i], prep[i], tracks[i].guess)
        order = sorted(range(len(pieces)), key=lambda k: (-(pieces[k][2] - pieces[k][1]), k))
        solved: dict[int, tuple[np.ndarray, bool, int]] = {}
        k = 0
        while k < len(order):
            t_max = pieces[order[k]][2] - pieces[order[k]][1]
            n = max(1, self.batch_frames // t_max)
            batch = order[k:k + n]
            k += n
            for idx, res in zip(batch, self._solve_chunks([pieces[j] for j in batch], t_max, betas, prep, x0, tracks)):
                solved[idx] = res
            if progress is not None:
                progress(sum(pieces[j][2] - pieces[j][1] for j in batch))

        for i in live:
            mine = [j for j, p in enumerate(pieces) if p[0] == i]
            ranges = [(pieces[j][1], pieces[j][2]) for j in mine]
            x = stitch(ranges, [solved[j][0] for j in mine], tracks[i].n_frames)
            conv = all(solved[j][1] for j in mine)
            its = max(solved[j][2] for j in mine)
            results[i] = self._finish(tracks[i], prep[i], betas[i], x, conv, its)
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------------------------------
    def _init_rigid(self, tr: TrackData, pp: _Prepared) -> Tensor:
        """Per-frame parameter start ``[T, P]``: rotation filled for every frame, the rest zero."""
        model = self.model
        t = tr.n_frames
        det = self._tensor(pp.detected, torch.bool)
        rot_lm = rotation_from_landmarks(model, self._tensor(pp.lmk3d), self._tensor(pp.w))
        if tr.transform is not None and self.align is not None:
            rot_tf, ok = rotation_from_transform(self._tensor(np.asarray(tr.transform, np.float32).reshape(t, 4, 4)), self.align)
            rot = torch.where((ok & det)[:, None, None], rot_tf, rot_lm)
        else:
            rot = rot_lm
        rot = rot[fill_nearest(det)]
        x = torch.zeros(t, model.n_params, dtype=torch.float32, device=self.device)
        x[:, ROT:ROT + 3] = matrix_to_axis_angle(rot)
        g = tr.guess
        if g is not None:
            if g.jaw is not None:
                x[:, JAW:JAW + 3] = self._tensor(np.asarray(g.jaw, np.float32).reshape(t, 3))
            if g.expression is not None:
                ex = np.asarray(g.expression, np.float32).reshape(t, -1)[:, : model.n_expr]
                x[:, EXPR:EXPR + ex.shape[1]] = self._tensor(ex)
        return x

    def _visibility(self, x: Tensor, pts_cam: Tensor) -> Tensor:
        """Landmark visibility factor ``[..., L]`` from the surface normal vs the viewing ray."""
        if not self.cfg.data.visibility:
            return torch.ones(pts_cam.shape[:-1], dtype=pts_cam.dtype, device=pts_cam.device)
        rg = rodrigues(x[..., ROT:ROT + 3])  # [...,3,3]
        n = torch.einsum("...cd,ld->...lc", rg, self.model.normals)
        ray = -pts_cam / pts_cam.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        cos = (n * ray).sum(-1)
        u = ((cos + 0.05) / 0.3).clamp(0, 1)
        vis = u * u * (3 - 2 * u)
        return torch.where(self.is_oval, torch.ones_like(vis), vis)

    def _translate(self, x: Tensor, beta: Tensor, obs: Tensor, w: Tensor, intr: Tensor) -> Tensor:
        """Least-squares translation of frames ``x [N, P]`` (shapes ``beta [N, S]``, ``obs [N, L, 2]``,
        ``w [N, L]``, ``intr [N, 3]``), everything else kept."""
        x = x.clone()
        x[:, TRANSL:TRANSL + 3] = 0
        pts = self.model.camera_points(beta, x[:, None])[:, 0]  # with τ = 0
        x[:, TRANSL:TRANSL + 3] = solve_translation(pts, obs, w, intr)
        return x

    def _init_transl(self, x: Tensor, beta: Tensor, pp: _Prepared, guess: ParamGuess | None) -> Tensor:
        """Translation of every frame by least squares given rotation, identity and expression start;
        frames without a face take the nearest detected frame's."""
        t = x.shape[0]
        intr = self._tensor(np.array(pp.camera.intrinsics(), np.float32))[None].expand(t, 3)
        x = self._translate(x, beta[None].expand(t, -1), self._tensor(pp.obs), self._tensor(pp.w), intr)
        x[:, TRANSL:TRANSL + 3] = x[fill_nearest(self._tensor(pp.detected, torch.bool)), TRANSL:TRANSL + 3]
        return x

    def _fit_shapes(self, live: list[int], tracks: list[TrackData], prep: list[_Prepared], x0: dict[int, Tensor]) -> dict[int, Tensor]:
        """One identity per group of tracks (same ``identity`` key), from keyframes spread over the
        group's detected frames."""
        model, sc = self.model, self.cfg.solver
        kmax = max(1, sc.shape_keyframes)
        groups: dict[Any, list[int]] = {}
        for i in live:
            key = tracks[i].identity if tracks[i].identity is not None else ("__track__", i)
            groups.setdefault(key, []).append(i)
        glist = list(groups.values())
        betas: dict[int, Tensor] = {}
        per_batch = max(1, self.batch_frames // (4 * kmax))
        for b0 in range(0, len(glist), per_batch):
            gs = glist[b0:b0 + per_batch]
            nb = len(gs)
            obs = torch.zeros(nb, kmax, model.n_landmarks, 2, device=self.device)
            w = torch.zeros(nb, kmax, model.n_landmarks, device=self.device)
            x = torch.zeros(nb, kmax, model.n_params, device=self.device)
            beta = torch.zeros(nb, model.n_shape, device=self.device)
            intr = torch.zeros(nb, 3, device=self.device)
            sigma = torch.zeros(nb, device=self.device)
            xs, obs_np, w_np, kpos = [], [], [], []
            for r, members in enumerate(gs):
                cand = [(i, f) for i in members for f in np.nonzero(prep[i].detected)[0]]
                pick = np.unique(np.round(np.linspace(0, len(cand) - 1, min(kmax, len(cand)))).astype(int))
                i0 = members[0]
                g = tracks[i0].guess
                if g is not None and g.shape is not None:
                    sh = np.asarray(g.shape, np.float32).reshape(-1)[: model.n_shape]
                    beta[r, : len(sh)] = self._tensor(sh)
                intr[r] = self._tensor(np.array(prep[i0].camera.intrinsics(), np.float32))
                sigma[r] = float(np.median([prep[i].sigma for i in members]))
                for k, c in enumerate(pick):
                    i, f = cand[c]
                    xs.append(x0[i][f])
                    obs_np.append(prep[i].obs[f])
                    w_np.append(prep[i].w[f])
                    kpos.append((r, k))
                for k in range(len(pick), kmax):  # padding: a copy of the last keyframe with weight 0
                    xs.append(x0[cand[pick[-1]][0]][cand[pick[-1]][1]])
                    obs_np.append(prep[cand[pick[-1]][0]].obs[cand[pick[-1]][1]])
                    w_np.append(np.zeros_like(prep[i0].w[0]))
                    kpos.append((r, k))
            rr = torch.as_tensor([p[0] for p in kpos], device=self.device)
            kk = torch.as_tensor([p[1] for p in kpos], device=self.device)
            ob = self._tensor(np.stack(obs_np))
            wk = self._tensor(np.stack(w_np))
            xk = self._translate(torch.stack(xs), beta[rr], ob, wk, intr[rr])
            x[rr, kk] = xk
            obs[rr, kk] = ob
            w[rr, kk] = wk
            pts = model.camera_points(beta, x)
            w = w * self._visibility(x, pts)
            rows = self._tensor(self.id_rows, torch.long)
            beta, _, info = solve_shape(
                self.id_model, beta, x, obs[:, :, rows], w[:, :, rows], intr, sigma, build_objective(self.cfg, model),
                n_iter=sc.shape_iterations, damping=sc.damping, tol=sc.tol, slice_frames=self.slice_frames,
            )
            for r, members in enumerate(gs):
                for i in members:
                    betas[i] = beta[r]
        return betas

    def _solve_chunks(self, pieces, t_max, betas, prep, x0, tracks) -> list[tuple[np.ndarray, bool, int]]:
        model, sc = self.model, self.cfg.solver
        nb = len(pieces)
        obs = torch.zeros(nb, t_max, model.n_landmarks, 2, device=self.device)
        w = torch.zeros(nb, t_max, model.n_landmarks, device=self.device)
        fm = torch.zeros(nb, t_max, device=self.device)
        x = torch.zeros(nb, t_max, model.n_params, device=self.device)
        beta = torch.zeros(nb, model.n_shape, device=self.device)
        intr = torch.zeros(nb, 3, device=self.device)
        sigma = torch.zeros(nb, device=self.device)
        fps = torch.zeros(nb, device=self.device)
        for r, (i, s, e) in enumerate(pieces):
            pp, n = prep[i], e - s
            obs[r, :n] = self._tensor(pp.obs[s:e])
            w[r, :n] = self._tensor(pp.w[s:e])
            fm[r, :n] = 1
            x[r, :n] = x0[i][s:e]
            x[r, n:] = x0[i][e - 1]
            beta[r] = betas[i]
            intr[r] = self._tensor(np.array(pp.camera.intrinsics(), np.float32))
            sigma[r] = pp.sigma
            fps[r] = float(tracks[i].fps or self.cfg.smooth.reference_fps)
        pts = model.camera_points(beta, x)
        w = w * self._visibility(x, pts)
        obj = build_objective(self.cfg, model, fps)
        warm, n_warm, n_full = None, 0, sc.full_iterations
        if self.cfg.smooth.preset != "tracking" and sc.smooth_iterations > 0:
            track_cfg = self.cfg.model_copy(update={"smooth": SmoothConfig(preset="tracking", reference_fps=self.cfg.smooth.reference_fps)})
            warm, n_warm = build_objective(track_cfg, model, fps), sc.full_iterations
            n_full = sc.full_iterations + sc.smooth_iterations
        xs, info = solve_sequence(
            model, beta, x, obs, w, fm, intr, sigma, obj,
            n_full=n_full, n_chord=sc.chord_iterations, damping=sc.damping, tol=sc.tol, slice_frames=self.slice_frames,
            coarse=self.coarse, warm=warm, n_warm=n_warm, hess_subset=self.hess_subset,
        )
        xs_np = xs.cpu().numpy()
        conv = info.converged.cpu().numpy()
        its = info.iterations.cpu().numpy()
        return [(xs_np[r, : e - s], bool(conv[r]), int(its[r])) for r, (i, s, e) in enumerate(pieces)]

    # ------------------------------------------------------------------------------------------
    def _finish(self, tr: TrackData, pp: _Prepared, beta: Tensor, x: np.ndarray, converged: bool, iterations: int) -> TrackFit:
        model = self.model
        xt = self._tensor(x)
        intr = self._tensor(np.array(pp.camera.intrinsics(), np.float32))[None]
        uv = model.project(beta[None], xt[None], intr)[0].cpu().numpy()  # [T,L,2]
        x = x.copy()
        x[:, TRANSL:TRANSL + 3] = model.flame_transl(beta[None], xt[None])[0].cpu().numpy()  # τ → FLAME's t
        finite_x = np.isfinite(x).all(1) & np.isfinite(uv).all((1, 2))
        obs_ok = np.isfinite(np.asarray(tr.landmarks, np.float32)[:, self.mp, :2]).all(-1) & pp.detected[:, None]
        err = np.linalg.norm(uv - pp.obs, axis=-1)  # [T,L]
        cnt = obs_ok.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rmse = np.sqrt((np.where(obs_ok, err, 0) ** 2).sum(1) / cnt)
            nme = (np.where(obs_ok, err, 0).sum(1) / cnt) / pp.iod
        rmse = np.where(pp.detected, rmse, np.nan).astype(np.float32)
        nme = np.where(pp.detected, nme, np.nan).astype(np.float32)
        valid = pp.detected & finite_x & (nme <= self.cfg.validity.max_nme)
        jr, ra, fa = jitter(uv, pp.obs, obs_ok)
        return TrackFit(
            shape=beta.cpu().numpy(), params=x.astype(np.float32), valid=valid, fit_rmse_px=rmse, nme=nme,
            jitter_ratio=jr, converged=converged, iterations=iterations, camera=pp.camera,
            raw_accel_px=ra, fit_accel_px=fa, uv=uv.astype(np.float32), obs=pp.obs, obs_ok=obs_ok,
        )

    def _failed(self, tr: TrackData, pp: _Prepared, why: str) -> TrackFit:
        t = tr.n_frames
        nan = np.full(t, np.nan, np.float32)
        return TrackFit(
            shape=np.full(self.model.n_shape, np.nan, np.float32), params=np.full((t, self.model.n_params), np.nan, np.float32),
            valid=np.zeros(t, bool), fit_rmse_px=nan, nme=nan.copy(), jitter_ratio=None, converged=False, iterations=0,
            camera=pp.camera, status="failed", error=why,
        )


def jitter(fit_uv: np.ndarray, obs: np.ndarray, ok: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean |second difference| of fitted vs observed landmarks over frame triples where all three
    observations exist. Args: ``[T, L, 2]``, ``[T, L, 2]``, ``[T, L]``. Returns (ratio, raw, fit)."""
    if fit_uv.shape[0] < 3:
        return None, None, None
    m = ok[2:] & ok[1:-1] & ok[:-2]
    if not m.any():
        return None, None, None
    af = np.linalg.norm(fit_uv[2:] - 2 * fit_uv[1:-1] + fit_uv[:-2], axis=-1)[m].mean()
    ar = np.linalg.norm(obs[2:] - 2 * obs[1:-1] + obs[:-2], axis=-1)[m].mean()
    if not ar > 0:
        return None, float(ar), float(af)
    return float(af / ar), float(ar), float(af)
