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
import time
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
    """A track's per-frame detection and scale figures (numpy, small); the landmark arrays of all
    tracks are prepared together on the fitter's device (:meth:`Fitter._prepare_all`)."""

    detected: np.ndarray  # [T] effective detection
    score: np.ndarray  # [T] detection score in [0, 1] (1 where unknown)
    iod: np.ndarray  # [T] per-frame IOD (track median where missing)
    sigma: float
    camera: PinholeCamera


@dataclass
class _Packed:
    """The live tracks' frames laid end to end (N frames in all), on the fitter's device where a tensor."""

    offs: np.ndarray  # [n_live + 1] first frame of each track
    lens: np.ndarray  # [n_live]
    lmk3d: Tensor  # [N, L, 3] the model's landmarks as observed, 0 where not finite
    obs: Tensor  # [N, L, 2] their pixels (a view of lmk3d)
    w: Tensor  # [N, L] base weights × finite × detected × score
    det: np.ndarray  # [N] bool
    det_t: Tensor  # [N] bool
    track_t: Tensor  # [N] live position of each frame's track
    start_t: Tensor  # [N] first frame of each frame's track
    end_t: Tensor  # [N] one past its last frame
    obs_ok: Tensor  # [N, L] landmark observed (finite x, y) in a detected frame
    iod: Tensor  # [N] inter-ocular distance, pixels (the track's median where missing)
    intr: Tensor  # [n_live, 3]
    sigma: np.ndarray  # [n_live]
    fps: np.ndarray  # [n_live]

    def frames_of(self, pieces: list[tuple[int, int, int]], t_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Frame indices of ``pieces`` (live position, start, end) padded to ``t_max`` steps:
        ``(track [B], length [B], index [B, t_max], mask [B, t_max])``; padding repeats a piece's
        last frame and is masked out."""
        k = np.array([p[0] for p in pieces])
        s = np.array([p[1] for p in pieces])
        n = np.array([p[2] - p[1] for p in pieces])
        step = np.arange(t_max)
        return k, n, self.offs[k][:, None] + s[:, None] + np.minimum(step[None], n[:, None] - 1), step[None] < n[:, None]


class _Clock:
    """Seconds per phase of one fit (``Fitter.timings``), the device synchronized at each lap."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync, self.t, self.laps = sync, time.perf_counter(), {}

    def lap(self, name: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.t
        self.t = now

    def done(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.laps.items()}


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
        self.timings: dict[str, float] = {}
        """Seconds per phase of the last :meth:`fit` (prepare, init, shape, track, finish)."""

    # ------------------------------------------------------------------------------------------
    def fit(self, tracks: list[TrackData], progress: Callable[[int], None] | None = None) -> list[TrackFit]:
        """Fit every track; a track without any detected frame comes back with status ``failed``."""
        with torch.inference_mode():
            return self._fit(tracks, progress)

    def _prepare_all(self, tracks: list[TrackData]) -> tuple[list[_Prepared], Tensor, Tensor]:
        """Every track's landmarks at once: returns the per-track figures, the model's landmarks of
        all frames laid end to end ``[N, L, 3]`` (on the device) and which are finite ``[N, L]``.

        The O(N·L) work (gather, finiteness) runs on the fitter's device over all tracks; only
        per-frame figures come back to the host for the per-track logic (detection, IOD median).
        """
        dc = self.cfg.data
        for tr in tracks:
            shape = np.shape(tr.landmarks)
            if len(shape) != 3 or shape[1:] != (478, 3):
                raise ValueError(f"track landmarks must be [T, 478, 3], got {shape}")
        lm = np.concatenate([np.asarray(tr.landmarks, np.float32) for tr in tracks])  # [N,478,3]
        pts = self._tensor(lm)
        if not np.array_equal(self.mp, np.arange(478)):
            pts = pts[:, self._tensor(self.mp, torch.long)]
        finite = torch.isfinite(pts.sum(-1))  # a NaN/Inf coordinate makes the sum non-finite
        frac = finite.float().mean(1).cpu().numpy()
        prep, s0 = [], 0
        for tr in tracks:
            t = np.shape(tr.landmarks)[0]
            det = np.asarray(tr.detected, bool).copy()
            if tr.det_score is not None:
                sc = np.asarray(tr.det_score, np.float32)
                det &= ~(np.isfinite(sc) & (sc < dc.min_det_score))
                score = np.where(np.isfinite(sc), np.clip(sc, 0.0, 1.0), 1.0).astype(np.float32)
            else:
                score = np.ones(t, np.float32)
            det &= frac[s0:s0 + t] >= dc.min_landmarks
            lmt = lm[s0:s0 + t]
            a, b = lmt[:, IOD_PAIR[0], :2], lmt[:, IOD_PAIR[1], :2]
            with np.errstate(invalid="ignore"):
                iod = np.linalg.norm(a - b, axis=-1)
            ok = np.isfinite(iod) & det & (iod > 0)
            if not ok.any() and det.any():
                # eye corners not observed (a landmark set without them): 0.6 × the face's width instead
                x = lmt[:, self.mp, 0]
                x = np.where(np.isfinite(lmt[:, self.mp]).all(-1), x, np.nan)
                with np.errstate(invalid="ignore"):
                    span = np.nanmax(x, 1) - np.nanmin(x, 1)
                iod = np.where(det, 0.6 * span, np.nan)
                ok = np.isfinite(iod) & det & (iod > 0)
            med = float(np.median(iod[ok])) if ok.any() else float("nan")
            iod = np.where(ok, iod, med).astype(np.float32)
            if tr.focal_px is not None:
                cam = PinholeCamera.from_focal(tr.width, tr.height, tr.focal_px)
            elif self.cfg.camera.focal_px is not None:
                cam = PinholeCamera.from_focal(tr.width, tr.height, self.cfg.camera.focal_px)
            else:
                cam = PinholeCamera.from_vfov(tr.width, tr.height, self.cfg.camera.vfov_deg)
            prep.append(_Prepared(det, score, iod, dc.noise_iod * med, cam))
            s0 += t
        return prep, pts, finite

    def _tensor(self, a: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.as_tensor(a, dtype=dtype, device=self.device)

    def _fit(self, tracks: list[TrackData], progress: Callable[[int], None] | None) -> list[TrackFit]:
        cfg = self.cfg
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        clock = _Clock(sync)
        if not tracks:
            self.timings = clock.done()
            return []
        prep, pts, finite = self._prepare_all(tracks)
        results: list[TrackFit | None] = [None] * len(tracks)
        live = []
        for i, (tr, pp) in enumerate(zip(tracks, prep)):
            if not pp.detected.any() or not math.isfinite(pp.sigma) or pp.sigma <= 0:
                results[i] = self._failed(tr, pp, "no detected face in any frame")
            else:
                live.append(i)
        if not live:
            self.timings = clock.done()
            return [r for r in results if r is not None]
        # every live track's frames laid end to end: the per-frame work of all tracks is one batch
        pk = self._pack(live, tracks, prep, pts, finite)
        del pts, finite
        clock.lap("prepare")

        # --- initialization (every frame at once; cheap, O(N·L)) ---
        x0 = self._init_rigid(pk, live, tracks)
        clock.lap("init")

        # --- identity: keyframes of each track ---
        betas = self._fit_shapes(pk, live, tracks, x0)  # [n_live, S]
        clock.lap("shape")

        # --- translation start values with the fitted identity ---
        x0 = self._translate(x0, betas[pk.track_t], pk.obs, pk.w, pk.intr[pk.track_t])
        x0[:, TRANSL:TRANSL + 3] = x0[fill_nearest(pk.det_t, pk.start_t, pk.end_t), TRANSL:TRANSL + 3]
        clock.lap("init")

        # --- tracking: chunks of all tracks, packed into padded batches ---
        pieces: list[tuple[int, int, int]] = []  # (live position, start, end)
        for k, i in enumerate(live):
            for s, e in chunk_ranges(tracks[i].n_frames, cfg.solver.chunk_frames, cfg.solver.chunk_overlap):
                pieces.append((k, s, e))
        order = sorted(range(len(pieces)), key=lambda j: (-(pieces[j][2] - pieces[j][1]), j))
        solved: dict[int, tuple[np.ndarray, bool, int]] = {}
        j = 0
        while j < len(order):
            t_max = pieces[order[j]][2] - pieces[order[j]][1]
            n = max(1, self.batch_frames // t_max)
            batch = order[j:j + n]
            j += n
            for idx, res in zip(batch, self._solve_chunks(pk, [pieces[q] for q in batch], t_max, betas, x0)):
                solved[idx] = res
            if progress is not None:
                progress(sum(pieces[q][2] - pieces[q][1] for q in batch))
        clock.lap("track")

        xs, conv, its = [], [], []
        for k, i in enumerate(live):
            mine = [q for q, p in enumerate(pieces) if p[0] == k]
            ranges = [(pieces[q][1], pieces[q][2]) for q in mine]
            xs.append(stitch(ranges, [solved[q][0] for q in mine], tracks[i].n_frames))
            conv.append(all(solved[q][1] for q in mine))
            its.append(max(solved[q][2] for q in mine))
        for k, r in enumerate(self._finish(pk, live, tracks, prep, betas, xs, conv, its)):
            results[live[k]] = r
        clock.lap("finish")
        self.timings = clock.done()
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------------------------------
    def _pack(self, live: list[int], tracks: list[TrackData], prep: list[_Prepared], pts: Tensor, finite: Tensor) -> _Packed:
        lens = np.array([tracks[i].n_frames for i in live], np.int64)
        offs = np.concatenate([[0], np.cumsum(lens)])
        track_of = np.repeat(np.arange(len(live)), lens)
        if len(live) < len(tracks):  # failed tracks' frames out
            first = np.concatenate([[0], np.cumsum([t.n_frames for t in tracks])])
            rows = self._tensor(np.concatenate([np.arange(first[i], first[i + 1]) for i in live]), torch.long)
            pts, finite = pts[rows], finite[rows]
        det = np.concatenate([prep[i].detected for i in live])
        det_t = self._tensor(det, torch.bool)
        score = self._tensor(np.concatenate([prep[i].score for i in live]))
        lmk3d = torch.where(finite[..., None], pts, 0.0)
        w = self._tensor(self.base_w)[None] * finite * (det_t * score)[:, None]
        cams = np.array([prep[i].camera.intrinsics() for i in live], np.float32)
        return _Packed(
            offs=offs, lens=lens, lmk3d=lmk3d, obs=lmk3d[..., :2], w=w, det=det, det_t=det_t,
            track_t=self._tensor(track_of, torch.long),
            start_t=self._tensor(offs[:-1][track_of], torch.long),
            end_t=self._tensor(offs[1:][track_of], torch.long),
            obs_ok=torch.isfinite(pts[..., :2].sum(-1)) & det_t[:, None],
            iod=self._tensor(np.concatenate([prep[i].iod for i in live])),
            intr=self._tensor(cams),
            sigma=np.array([prep[i].sigma for i in live], np.float32),
            fps=np.array([float(tracks[i].fps or self.cfg.smooth.reference_fps) for i in live], np.float32),
        )

    def _init_rigid(self, pk: _Packed, live: list[int], tracks: list[TrackData]) -> Tensor:
        """Per-frame parameter start ``[N, P]`` of all live tracks: rotation filled for every frame,
        jaw/expression from a regressor's guess where one is given, the rest zero."""
        model = self.model
        n = int(pk.offs[-1])
        rot = rotation_from_landmarks(model, pk.lmk3d, pk.w)
        if self.align is not None and any(tracks[i].transform is not None for i in live):
            # tracks without matrices get NaN ones: not finite → the landmark rotation, as if absent
            tf = np.concatenate([
                np.asarray(tracks[i].transform, np.float32).reshape(-1, 4, 4) if tracks[i].transform is not None
                else np.full((tracks[i].n_frames, 4, 4), np.nan, np.float32) for i in live
            ])
            rot_tf, ok = rotation_from_transform(self._tensor(tf), self.align)
            rot = torch.where((ok & pk.det_t)[:, None, None], rot_tf, rot)
        rot = rot[fill_nearest(pk.det_t, pk.start_t, pk.end_t)]
        x = torch.zeros(n, model.n_params, dtype=torch.float32, device=self.device)
        x[:, ROT:ROT + 3] = matrix_to_axis_angle(rot)
        if any(tracks[i].guess is not None for i in live):
            guess = np.zeros((n, model.n_params), np.float32)
            for k, i in enumerate(live):
                g, (s, t) = tracks[i].guess, (int(pk.offs[k]), tracks[i].n_frames)
                if g is None:
                    continue
                if g.jaw is not None:
                    guess[s:s + t, JAW:JAW + 3] = np.asarray(g.jaw, np.float32).reshape(t, 3)
                if g.expression is not None:
                    ex = np.asarray(g.expression, np.float32).reshape(t, -1)[:, : model.n_expr]
                    guess[s:s + t, EXPR:EXPR + ex.shape[1]] = ex
            x[:, JAW:JAW + 3] = self._tensor(guess[:, JAW:JAW + 3])
            x[:, EXPR:EXPR + model.n_expr] = self._tensor(guess[:, EXPR:EXPR + model.n_expr])
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

    def _fit_shapes(self, pk: _Packed, live: list[int], tracks: list[TrackData], x0: Tensor) -> Tensor:
        """One identity per group of tracks (same ``identity`` key), from keyframes spread over the
        group's detected frames. Returns ``[n_live, S]`` (rows of one group are equal)."""
        model, sc = self.model, self.cfg.solver
        kmax = max(1, sc.shape_keyframes)
        groups: dict[Any, list[int]] = {}
        for k, i in enumerate(live):
            key = tracks[i].identity if tracks[i].identity is not None else ("__track__", k)
            groups.setdefault(key, []).append(k)
        glist = list(groups.values())
        betas = torch.zeros(len(live), model.n_shape, device=self.device)
        per_batch = max(1, self.batch_frames // (4 * kmax))
        rows = self._tensor(self.id_rows, torch.long)
        for b0 in range(0, len(glist), per_batch):
            gs = glist[b0:b0 + per_batch]
            nb = len(gs)
            beta_np = np.zeros((nb, model.n_shape), np.float32)
            first = np.array([members[0] for members in gs])
            sigma = np.array([np.median(pk.sigma[members]) for members in gs], np.float32)
            # keyframes as global frame indices; padding repeats the last keyframe with weight 0
            gidx = np.zeros((nb, kmax), np.int64)
            pad = np.zeros((nb, kmax), bool)
            for r, members in enumerate(gs):
                cand = np.concatenate([np.nonzero(pk.det[pk.offs[k]:pk.offs[k + 1]])[0] + pk.offs[k] for k in members])
                pick = np.unique(np.round(np.linspace(0, len(cand) - 1, min(kmax, len(cand)))).astype(int))
                gidx[r, : len(pick)] = cand[pick]
                gidx[r, len(pick):] = cand[pick[-1]]
                pad[r, len(pick):] = True
                g = tracks[live[members[0]]].guess
                if g is not None and g.shape is not None:
                    sh = np.asarray(g.shape, np.float32).reshape(-1)[: model.n_shape]
                    beta_np[r, : len(sh)] = sh
            beta, intr = self._tensor(beta_np), pk.intr[self._tensor(first, torch.long)]
            gi = self._tensor(gidx.reshape(-1), torch.long)
            obs = pk.obs[gi].reshape(nb, kmax, model.n_landmarks, 2)
            w = (pk.w[gi] * self._tensor(~pad.reshape(-1))[:, None]).reshape(nb, kmax, model.n_landmarks)
            rep = torch.arange(nb, device=self.device).repeat_interleave(kmax)
            x = self._translate(x0[gi], beta[rep], obs.reshape(nb * kmax, -1, 2), w.reshape(nb * kmax, -1), intr[rep])
            x = x.reshape(nb, kmax, model.n_params)
            pts = model.camera_points(beta, x)
            w = w * self._visibility(x, pts)
            beta, _, info = solve_shape(
                self.id_model, beta, x, obs[:, :, rows], w[:, :, rows], intr, self._tensor(sigma), build_objective(self.cfg, model),
                n_iter=sc.shape_iterations, damping=sc.damping, tol=sc.tol, slice_frames=self.slice_frames,
            )
            owner = np.concatenate([np.full(len(members), r) for r, members in enumerate(gs)])
            betas[self._tensor(np.concatenate(gs), torch.long)] = beta[self._tensor(owner, torch.long)]
        return betas

    def _solve_chunks(self, pk: _Packed, pieces: list[tuple[int, int, int]], t_max: int, betas: Tensor, x0: Tensor) -> list[tuple[np.ndarray, bool, int]]:
        model, sc = self.model, self.cfg.solver
        nb = len(pieces)
        k, n, gidx, mask = pk.frames_of(pieces, t_max)
        gi, fm = self._tensor(gidx.reshape(-1), torch.long), self._tensor(mask, torch.float32)
        kt = self._tensor(k, torch.long)
        obs = pk.obs[gi].reshape(nb, t_max, model.n_landmarks, 2) * fm[..., None, None]
        w = pk.w[gi].reshape(nb, t_max, model.n_landmarks) * fm[..., None]
        x = x0[gi].reshape(nb, t_max, model.n_params)
        beta, intr = betas[kt], pk.intr[kt]
        sigma, fps = self._tensor(pk.sigma[k]), self._tensor(pk.fps[k])
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
        return [(xs_np[r, : n[r]], bool(conv[r]), int(its[r])) for r in range(nb)]

    # ------------------------------------------------------------------------------------------
    def _finish(self, pk: _Packed, live: list[int], tracks: list[TrackData], prep: list[_Prepared], betas: Tensor,
                xs: list[np.ndarray], conv: list[bool], its: list[int]) -> list[TrackFit]:
        """Fitted pixels, FLAME translation and the quality figures of every live track, computed for
        all frames at once on the fitter's device (one copy back per output)."""
        model = self.model
        x_np = np.concatenate(xs).astype(np.float32)
        n_all = len(x_np)
        x_all = self._tensor(x_np)
        uv = torch.empty(n_all, model.n_landmarks, 2, device=self.device)
        transl = torch.empty(n_all, 3, device=self.device)
        # the model evaluated in blocks of ≤ chunk_frames frames of one track (one shape per block)
        bl = max(1, self.cfg.solver.chunk_frames)
        blocks = [(k, s, min(s + bl, int(pk.lens[k]))) for k in range(len(live)) for s in range(0, int(pk.lens[k]), bl)]
        per = max(1, self.batch_frames // bl)
        for b0 in range(0, len(blocks), per):
            k, _, gidx, m = pk.frames_of(blocks[b0:b0 + per], bl)
            kt, gi, sel = self._tensor(k, torch.long), self._tensor(gidx, torch.long), self._tensor(m, torch.bool)
            xt = x_all[gi]
            uv[gi[sel]] = model.project(betas[kt], xt, pk.intr[kt])[sel]
            transl[gi[sel]] = model.flame_transl(betas[kt], xt)[sel]  # τ → FLAME's t
        x_all[:, TRANSL:TRANSL + 3] = transl
        ok, det = pk.obs_ok, pk.det_t
        err = (uv - pk.obs).norm(dim=-1)  # [N,L]
        cnt = ok.sum(1)
        nan = torch.full_like(cnt, float("nan"), dtype=uv.dtype)
        rmse = torch.where(det, ((torch.where(ok, err, 0) ** 2).sum(1) / cnt).sqrt(), nan)
        nme = torch.where(det, torch.where(ok, err, 0).sum(1) / cnt / pk.iod, nan)
        finite = torch.isfinite(x_all).all(1) & torch.isfinite(uv).all(2).all(1)
        valid = det & finite & (nme <= self.cfg.validity.max_nme)
        jit = track_jitter(uv, pk.obs, ok, pk.track_t, pk.start_t, len(live))
        uv_np, x_np, rmse_np, nme_np, valid_np, jit_np = (a.cpu().numpy() for a in (uv, x_all, rmse, nme, valid, jit))
        ok_np, obs_np, shapes = ok.cpu().numpy(), pk.obs.cpu().numpy(), betas.cpu().numpy()
        out = []
        for k, i in enumerate(live):
            pp, sl = prep[i], slice(int(pk.offs[k]), int(pk.offs[k + 1]))
            ra, fa = (float(v) if np.isfinite(v) else None for v in jit_np[k])
            jr = fa / ra if ra is not None and fa is not None and ra > 0 else None
            out.append(TrackFit(
                shape=shapes[k], params=x_np[sl], valid=valid_np[sl], fit_rmse_px=rmse_np[sl], nme=nme_np[sl],
                jitter_ratio=jr, converged=conv[k], iterations=its[k], camera=pp.camera,
                raw_accel_px=ra, fit_accel_px=fa, uv=uv_np[sl], obs=obs_np[sl], obs_ok=ok_np[sl],
            ))
        return out

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


def track_jitter(uv: Tensor, obs: Tensor, ok: Tensor, track: Tensor, start: Tensor, n_tracks: int) -> Tensor:
    """:func:`jitter`'s raw and fitted accelerations for many tracks laid end to end, in one pass.

    Args: ``uv``/``obs [N, L, 2]``, ``ok [N, L]``, ``track [N]`` (index of each frame's track),
    ``start [N]`` (its first frame). Returns ``[n_tracks, 2]``: (raw, fit) mean |second difference|
    over the frame triples of one track where all three observations exist; NaN where none do.
    """
    if uv.shape[0] < 3:
        return torch.full((n_tracks, 2), float("nan"), dtype=uv.dtype, device=uv.device)
    idx = torch.arange(2, uv.shape[0], device=uv.device)
    m = ok[2:] & ok[1:-1] & ok[:-2] & (idx - 2 >= start[2:])[:, None]  # the triple lies in one track
    af = (uv[2:] - 2 * uv[1:-1] + uv[:-2]).norm(dim=-1)
    ar = (obs[2:] - 2 * obs[1:-1] + obs[:-2]).norm(dim=-1)
    tr = track[2:]
    zero = torch.zeros(n_tracks, dtype=torch.float64, device=uv.device)
    cnt = zero.index_add(0, tr, m.sum(1).double())
    raw = zero.index_add(0, tr, torch.where(m, ar, 0).double().sum(1)) / cnt
    fit = zero.index_add(0, tr, torch.where(m, af, 0).double().sum(1)) / cnt
    return torch.stack([raw, fit], 1).to(uv.dtype)

