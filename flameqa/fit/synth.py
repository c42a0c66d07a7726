"""Ground-truth benchmark: random but plausible talking-head parameter sequences, projected, fitted.

Per track: an identity drawn from the shape prior; a head that turns (yaw ±25°, pitch ±12°,
roll ±6°) and sways (±2 cm) slowly; speech-like jaw opening (0–17°, 2–5 Hz syllable rhythm);
expression coefficients as smooth random processes (0.2–3 Hz, std 0.5 each); eyes that follow a
slow gaze. Landmarks are projected with the fitter's own camera model (pinhole, 63° vertical FOV) to
a 512×512 image, MediaPipe-style relative depth is added, and i.i.d. Gaussian noise (σ px per
coordinate) is added to x and y. The facial transformation matrix MediaPipe would report is given
with 2° of rotation noise.

Figures (:func:`evaluate`):

- ``landmark_rmse_px``: RMS over frames and landmarks of the 2-D distance between fitted and
  *observed* (noisy) landmarks; ``noise_rms_px``: RMS of the 2-D noise that was added (√2·σ). A fit
  that explains everything but the noise has landmark_rmse_px ≈ noise_rms_px · √(1 − p/n) ≤ noise.
- ``landmark_rmse_gt_px``: against the noise-free landmarks.
- ``jaw_err_deg``: mean angle between fitted and true jaw rotations.
- ``vertex_err_mm``: median per-vertex distance (model units × 1000) between fitted and true meshes
  with the rigid head pose removed (global rotation and translation zero in both), all vertices of
  all frames.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flameqa.fit.camera import PinholeCamera
from flameqa.fit.fitter import TrackData, TrackFit
from flameqa.fit.model import EXPR, JAW, ROT, TRANSL, LandmarkModel, rodrigues


@dataclass
class SynthTrack:
    """Ground truth of one synthetic track."""

    shape: np.ndarray  # [S]
    params: np.ndarray  # [T, P]
    clean_uv: np.ndarray  # [T, L, 2]
    noisy_uv: np.ndarray  # [T, L, 2]


def _smooth_process(rng: np.random.Generator, t: np.ndarray, n: int, f_lo: float, f_hi: float, n_sin: int = 4) -> np.ndarray:
    """``[T, n]`` zero-mean, unit-std sums of random sinusoids with frequencies in [f_lo, f_hi] Hz."""
    f = rng.uniform(f_lo, f_hi, size=(n_sin, n))
    ph = rng.uniform(0, 2 * np.pi, size=(n_sin, n))
    amp = rng.uniform(0.5, 1.0, size=(n_sin, n))
    x = (amp[None] * np.sin(2 * np.pi * f[None] * t[:, None, None] + ph[None])).sum(1)
    return x / np.sqrt((amp**2).sum(0) / 2)[None]


SPEECH_COMPONENTS = 8


def random_params(model: LandmarkModel, n_frames: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Identity ``[S]`` and per-frame parameters ``[T, P]`` of one plausible talking-head track."""
    t = np.arange(n_frames) / fps
    p = np.zeros((n_frames, model.n_params))
    shape = rng.normal(0, 1.0, model.n_shape)
    head = _smooth_process(rng, t, 3, 0.05, 0.4)
    p[:, ROT:ROT + 3] = head * np.radians([12.0, 25.0, 6.0]) / 2 + np.radians(rng.uniform(-5, 5, 3))
    sway = _smooth_process(rng, t, 3, 0.05, 0.5)
    p[:, TRANSL:TRANSL + 3] = sway * 0.01 + [rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), -rng.uniform(0.32, 0.45)]
    syll = _smooth_process(rng, t, 1, 1.5, 4.0)[:, 0]
    p[:, JAW] = np.radians(14.0) * np.clip(0.5 + 0.5 * syll, 0, 1) ** 1.5
    p[:, JAW + 1:JAW + 3] = _smooth_process(rng, t, 2, 0.2, 2.0) * 0.01
    gaze = _smooth_process(rng, t, 2, 0.1, 1.0) * 0.12
    for e in (JAW + 3, JAW + 6):
        p[:, e:e + 2] = gaze
    # expressions: every coefficient drifts slowly (moods, brows, smiles), a few follow speech
    e = model.n_expr
    p[:, EXPR:] = 0.4 * _smooth_process(rng, t, e, 0.05, 0.5) + rng.normal(0, 0.2, e)
    fast = rng.choice(e, size=min(SPEECH_COMPONENTS, e), replace=False)
    p[:, EXPR + fast] += 0.3 * _smooth_process(rng, t, len(fast), 1.0, 4.0)
    return shape, p


def make_tracks(
    model: LandmarkModel,
    n_frames: int,
    *,
    track_frames: int = 250,
    fps: float = 25.0,
    noise_px: float = 1.0,
    size: int = 512,
    seed: int = 0,
    transform_noise_deg: float = 2.0,
) -> tuple[list[TrackData], list[SynthTrack]]:
    """Synthetic tracks totalling ``n_frames`` frames (the last track may be shorter)."""
    rng = np.random.default_rng(seed)
    cam = PinholeCamera.from_vfov(size, size)
    intr = torch.tensor([cam.intrinsics()], dtype=torch.float64)
    m64 = model.to("cpu", torch.float64)
    mp = m64.mp_indices.numpy()
    tracks, truth = [], []
    left = n_frames
    while left > 0:
        n = min(track_frames, left)
        left -= n
        shape, p = random_params(m64, n, fps, rng)
        beta = torch.as_tensor(shape)[None]
        x = torch.as_tensor(p)[None].clone()
        x[..., TRANSL:TRANSL + 3] = m64.internal_transl(beta, x)  # FLAME's t → the fitter's τ
        pts = m64.camera_points(beta, x)
        uv = m64.project(beta, x, intr)[0].numpy()
        x = torch.as_tensor(p)[None]
        noisy = uv + rng.normal(0, noise_px, uv.shape)
        depth = -pts[0, ..., 2].numpy()
        z = (depth - depth.mean(1, keepdims=True)) * cam.focal_px / depth.mean(1, keepdims=True)
        lm = np.full((n, 478, 3), np.nan, np.float32)
        lm[:, mp, :2] = noisy
        lm[:, mp, 2] = z
        # MediaPipe-style matrix: canonical (cm) → camera (cm); for the demo head canonical = model × 100
        rot = rodrigues(x[0, :, ROT:ROT + 3]).numpy()
        jitter = rodrigues(torch.as_tensor(rng.normal(0, math.radians(transform_noise_deg) / math.sqrt(3), (n, 3)))).numpy()
        tf = np.zeros((n, 4, 4), np.float32)
        tf[:, :3, :3] = jitter @ rot
        j0 = m64.joints(m64.shape_state(beta), x)[0, :, 0].numpy()
        tf[:, :3, 3] = 100 * (j0 - np.einsum("tcd,td->tc", rot, j0) + p[:, TRANSL:TRANSL + 3])
        tf[:, 3, 3] = 1
        tracks.append(
            TrackData(landmarks=lm, detected=np.ones(n, bool), width=size, height=size, fps=fps,
                      det_score=np.ones(n, np.float32), transform=tf)
        )
        truth.append(SynthTrack(shape, p, uv, noisy))
    return tracks, truth


def evaluate(layer: torch.nn.Module, model: LandmarkModel, fits: list[TrackFit], truth: list[SynthTrack]) -> dict[str, float]:
    """Benchmark figures (see the module doc) of fits against their ground truth."""
    m64 = model.to("cpu", torch.float64)
    sq_obs, sq_gt, sq_noise, n_pts = 0.0, 0.0, 0.0, 0
    jaw_err, vert_err = [], []
    for f, g in zip(fits, truth):
        size = f.camera
        intr = torch.tensor([size.intrinsics()], dtype=torch.float64)
        beta = torch.as_tensor(f.shape, dtype=torch.float64)[None]
        x = torch.as_tensor(f.params, dtype=torch.float64)[None].clone()
        x[..., TRANSL:TRANSL + 3] = m64.internal_transl(beta, x)
        uv = m64.project(beta, x, intr)[0].numpy()
        sq_obs += ((uv - g.noisy_uv) ** 2).sum()
        sq_gt += ((uv - g.clean_uv) ** 2).sum()
        sq_noise += ((g.noisy_uv - g.clean_uv) ** 2).sum()
        n_pts += uv.shape[0] * uv.shape[1]
        rf = rodrigues(torch.as_tensor(f.params[:, JAW:JAW + 3], dtype=torch.float64))
        rg = rodrigues(torch.as_tensor(g.params[:, JAW:JAW + 3], dtype=torch.float64))
        rel = rf @ rg.transpose(-1, -2)
        cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
        jaw_err.append(torch.rad2deg(torch.arccos(cos)).numpy())
        vert_err.append(_head_frame_vertex_error(layer, f, g))
    return {
        "landmark_rmse_px": math.sqrt(sq_obs / n_pts),
        "landmark_rmse_gt_px": math.sqrt(sq_gt / n_pts),
        "noise_rms_px": math.sqrt(sq_noise / n_pts),
        "jaw_err_deg": float(np.concatenate(jaw_err).mean()),
        "jaw_err_p95_deg": float(np.percentile(np.concatenate(jaw_err), 95)),
        "vertex_err_mm": float(np.median(np.concatenate(vert_err))) * 1000.0,
    }


def _head_frame_vertex_error(layer: torch.nn.Module, f: TrackFit, g: SynthTrack) -> np.ndarray:
    """Per-vertex distances ``[T·V]`` between fitted and true meshes, rigid head pose removed."""
    out = []
    dt = layer.v_template.dtype
    n_s, n_e = int(layer.n_shape), int(layer.n_expr)
    for params, shape in ((f.params, f.shape), (g.params, g.shape)):
        t = params.shape[0]
        pose = np.zeros((t, 15))
        pose[:, 6:15] = params[:, JAW:EXPR]
        ex = np.zeros((t, n_e))
        ex[:, : params.shape[1] - EXPR] = params[:, EXPR:EXPR + n_e]
        sh = np.zeros(n_s)
        sh[: len(shape)] = shape[:n_s]
        with torch.inference_mode():
            v = layer(
                shape=torch.as_tensor(np.repeat(sh[None], t, 0), dtype=dt),
                expression=torch.as_tensor(ex, dtype=dt),
                pose=torch.as_tensor(pose, dtype=dt),
            ).vertices
        out.append(v.double().numpy())
    return np.linalg.norm(out[0] - out[1], axis=-1).reshape(-1)


# ---------------------------------------------------------------------------------------------
# CPU worker processes (one torch thread each)
# ---------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(cfg_json: dict, model: str) -> None:
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import build_fitter
    from flameqa.flame import FlameLayer

    torch.set_num_threads(1)
    cfg = FitConfig.model_validate(cfg_json)
    layer = FlameLayer.from_file(model, n_shape=cfg.n_shape, n_expr=cfg.n_expr)
    _WORKER["fitter"] = build_fitter(cfg, device="cpu", layer=layer)


def _worker_fit(tracks: list[TrackData]) -> tuple[list[TrackFit], float]:
    c0 = time.process_time()
    fits = _WORKER["fitter"].fit(tracks)
    return fits, time.process_time() - c0


def _split(tracks: list[TrackData], parts: int) -> list[list[int]]:
    """Track indices in ``parts`` groups of about equal frame counts (longest first, greedy)."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    load = [0] * parts
    for i in sorted(range(len(tracks)), key=lambda k: -tracks[k].n_frames):
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += tracks[i].n_frames
    return [g for g in groups if g]


def run_benchmark(
    frames: int = 10000,
    *,
    device: str = "cpu",
    model: str = "demo",
    config: Any = None,
    track_frames: int = 250,
    noise_px: float = 1.0,
    seed: int = 0,
    warmup: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
    """Generate, fit and score; returns the benchmark JSON object.

    ``workers`` > 1 (CPU only): the tracks are split over that many processes with one torch
    thread each, the way the pipeline's local executor uses several cores. On CPU, torch's own
    thread pool collapses when the cores are shared with other work (spin-waiting threads), while
    single-threaded processes degrade gracefully.
    """
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import build_fitter
    from flameqa.flame import FlameLayer

    cfg = config or FitConfig()
    layer = FlameLayer.from_file(model, n_shape=cfg.n_shape, n_expr=cfg.n_expr)
    fitter = build_fitter(cfg, device=device, layer=layer)
    tracks, truth = make_tracks(fitter.model, frames, track_frames=track_frames, noise_px=noise_px, seed=seed)
    pool = None
    if fitter.device.type == "cpu" and workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                   initargs=(cfg.model_dump(mode="json"), model))
        # start every worker (imports, model) before timing
        list(pool.map(_worker_fit, [[tracks[0]]] * workers))
    else:
        if fitter.device.type == "cpu" and cfg.cpu_threads is not None:
            torch.set_num_threads(cfg.cpu_threads)
        if warmup:  # first-call costs (allocator, kernels) are not throughput
            fitter.fit(tracks[:1])
    try:
        if fitter.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        c0 = time.process_time()
        if pool is not None:
            groups = _split(tracks, workers)
            results = list(pool.map(_worker_fit, [[tracks[i] for i in g] for g in groups]))
            fits: list[TrackFit] = [None] * len(tracks)  # type: ignore[list-item]
            cpu = 0.0
            for g, (res, sec) in zip(groups, results):
                cpu += sec
                for i, f in zip(g, res):
                    fits[i] = f
        else:
            fits = fitter.fit(tracks)
            cpu = time.process_time() - c0
        if fitter.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    finally:
        if pool is not None:
            pool.shutdown()
    out: dict[str, Any] = {"frames_per_s": frames / wall}
    # CPU time is what a busy, shared machine cannot take away: frames per CPU-second of fitting
    out["frames_per_cpu_s"] = frames / cpu if cpu > 0 else None
    out.update(evaluate(layer, fitter.model, fits, truth))
    out["iterations"] = float(np.mean([f.iterations for f in fits]))
    out["converged"] = float(np.mean([f.converged for f in fits]))
    out["device"] = str(fitter.device)
    out["frames"] = frames
    out["seconds"] = wall
    out["model"] = str(layer.model_id)
    out["landmarks"] = int(fitter.model.n_landmarks)
    out["smooth_preset"] = cfg.smooth.preset
    out["workers"] = workers if pool is not None else 1
    if pool is None:  # where the time went (device synchronized at each phase's end)
        out["phase_seconds"] = dict(fitter.timings)
    out["torch_threads"] = 1 if pool is not None else torch.get_num_threads()
    return out
