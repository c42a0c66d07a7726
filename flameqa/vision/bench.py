"""Throughput of the faces stage against raw MediaPipe on the same video.

* ``landmarker_fps``: MediaPipe FaceLandmarker alone (VIDEO mode, same options as the stage) on
  the video's frames decoded beforehand (at the size the stage would use), a chunk at a time:
  ``mp.Image`` from the array, then the public ``detect_for_video``, nothing else — the ceiling
  for the stage. The graph is the one a clip starts on: with ``adapt_faces`` it looks for one
  face, the lightest the stage ever runs (on a video of several faces the stage runs heavier
  graphs than this ceiling). Every frame by default (the first seconds of a video may be easier or harder
  than the rest: 250 frames from its start measured 3 % faster than its average), or
  ``max_frames`` in chunks spread over the video.
* ``landmarker_c_fps``: the same on a second graph through the bare C call the stage makes
  (:mod:`flameqa.vision.mp_results`: no Python object per landmark), chunk by chunk beside the
  first: the tighter ceiling.
* ``stage_fps``: the whole ``faces`` stage through the local executor — decode, landmarks,
  detection scores, tracking, Parquet writing, and for ``workers > 1`` the process pool's start —
  over the video cut into ``workers`` equal clips, frames / wall seconds: one shard each on the
  executor's worker processes (``pool="workers"``), or all in one shard on the stage's own inner
  processes (``pool="inner"``, how one video runs in a pipeline).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

log = logging.getLogger(__name__)


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the pool's workers, once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _chunks(video: str | Path, cfg: Any, fps: float, max_frames: int | None, chunk: int) -> Iterator[list[np.ndarray]]:
    """Decoded frames (the stage's size and orientation) in lists of ≤ ``chunk``: every frame of
    the video, or ``max_frames`` of them in chunks spread evenly over it."""
    from flameqa.io.media import probe
    from flameqa.vision.stage import decode_frames, decode_geometry

    p = probe(video)
    _, dec, stored = decode_geometry(p.width or 0, p.height or 0, p.rotation, cfg.max_side)
    spans: list[tuple[float, int | None]] = [(0.0, None)]
    # fewer frames than asked for: all of them, once (spread chunks would overlap)
    if max_frames is not None and p.duration_s and max_frames < p.duration_s * fps:
        k = max(1, -(-max_frames // chunk))
        spans = [(i * p.duration_s / k, -(-max_frames // k)) for i in range(k)]
    for start, n in spans:
        frames: list[np.ndarray] = []
        for _, _, img in decode_frames(str(video), fps, start, None, p.rotation, dec, stored):
            frames.append(img)
            if len(frames) == chunk or (n is not None and len(frames) == n):
                yield frames
                frames = []
                if n is not None:
                    break
        if frames:
            yield frames


def landmark_acceleration(landmarks: np.ndarray) -> float:
    """Mean frame-to-frame landmark acceleration (|second difference| of x, y) per inter-ocular
    distance: how much the landmarks shake. ``landmarks`` ``[T, 478, 2|3]`` pixels, one face;
    frames without it NaN (triples touching them are left out)."""
    xy = np.asarray(landmarks, np.float64)[:, :, :2]
    acc = np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)
    return float(np.nanmean(acc) / np.nanmean(np.linalg.norm(xy[:, 33] - xy[:, 263], axis=-1)))


def steadiness(video: str | Path, cfg: Any = None, fps: float = 25.0) -> dict[str, Any]:
    """The first face's landmarks over a one-shot video through the stage's landmarker:
    ``{"acceleration_per_iod", "cpu_ms", "frames", "found"}`` (CPU of all threads, per frame)."""
    from flameqa.io.media import probe
    from flameqa.vision.config import LandmarkerConfig
    from flameqa.vision.landmarker import N_LANDMARKS, FaceLandmarker
    from flameqa.vision.stage import decode_frames, decode_geometry

    cfg = cfg or LandmarkerConfig()
    p = probe(video)
    _, dec, stored = decode_geometry(p.width or 0, p.height or 0, p.rotation, cfg.max_side)
    frames = [img for _, _, img in decode_frames(str(video), fps, 0.0, None, p.rotation, dec, stored)]
    out = []
    with FaceLandmarker(cfg) as lm:
        for i, img in enumerate(frames[:5]):  # the first calls initialise the graphs
            lm.detect(img, 40 * i)
        lm.start_clip()
        c0 = _cpu()
        for i, img in enumerate(frames):
            f = lm.detect(img, int(round(i * 1000.0 / fps)), full_size=(p.width, p.height) if dec else None)
            out.append(f.landmarks[0] if f.n else np.full((N_LANDMARKS, 3), np.nan, np.float32))
        cpu = _cpu() - c0
    lms = np.stack(out)
    return {"acceleration_per_iod": landmark_acceleration(lms), "cpu_ms": cpu / max(1, len(frames)) * 1e3,
            "frames": len(frames), "found": int(np.isfinite(lms[:, 0, 0]).sum())}


def landmarker_fps(video: str | Path, cfg: Any = None, max_frames: int | None = None, chunk: int = 250, fps: float = 25.0) -> dict[str, Any]:
    """Raw FaceLandmarker speed on the video's frames, decoded beforehand (see the module docstring).

    Two graphs see the same frames, chunk by chunk: one called through MediaPipe's public API
    (``detect_for_video``, whose result objects are built in Python), one through the bare C call
    the stage uses (:mod:`flameqa.vision.mp_results`). Only the calls are timed.

    Returns ``{"fps", "c_fps", "frames", "cpu_ms", "c_cpu_ms"}`` (cpu: all threads, per frame).
    """
    import mediapipe as mp

    from flameqa.vision.config import LandmarkerConfig
    from flameqa.vision.landmarker import FaceLandmarker
    from flameqa.vision.mp_results import VideoCall

    cfg = cfg or LandmarkerConfig()
    wall = {"api": 0.0, "c": 0.0}
    cpu = dict(wall)
    frames = 0
    with FaceLandmarker(cfg) as a, FaceLandmarker(cfg) as b:
        a.start_clip(), b.start_clip()
        api, c = a._lm.detect_for_video, VideoCall.of(b._lm)  # the bare graphs: nothing of ours timed
        if c is None:
            raise RuntimeError("this mediapipe lacks the internals mp_results reads")
        t = 0
        warm = True
        for images in _chunks(video, cfg, fps, max_frames, chunk):
            if warm:  # the first calls initialise the graphs
                for im in images[:10]:
                    img = mp.Image(image_format=mp.ImageFormat.SRGB, data=im)
                    api(img, t), c(img, t)
                    t += 40
                warm = False
            for name, fn in (("api", api), ("c", c)):
                c0, t0 = _cpu(), time.perf_counter()
                for i, im in enumerate(images):
                    fn(mp.Image(image_format=mp.ImageFormat.SRGB, data=im), t + 40 * i)
                wall[name] += time.perf_counter() - t0
                cpu[name] += _cpu() - c0
            t += 40 * len(images) + 1000  # the next chunk may be elsewhere in the video: a gap
            frames += len(images)
    if not frames:
        raise ValueError(f"{video}: no frames decoded")
    return {
        "fps": frames / wall["api"], "c_fps": frames / wall["c"], "frames": frames,
        "cpu_ms": cpu["api"] / frames * 1e3, "c_cpu_ms": cpu["c"] / frames * 1e3,
    }


def stage_fps(video: str | Path, workers: int = 1, cfg: Any = None, work_dir: str | Path | None = None, pool: str = "workers") -> tuple[float, int, float, float]:
    """End-to-end ``faces`` stage fps with ``workers`` processes; returns (fps, frames, seconds, cpu ms/frame).

    ``pool="workers"``: one shard per process, run by the local executor's worker processes (each
    spawned and started inside the timed run). ``pool="inner"``: the path of one video in a
    pipeline run, one shard whose clips the stage spreads over its own process and
    ``workers − 1`` helpers (``runner.inner_processes``)."""
    from flameqa.config import PipelineConfig
    from flameqa.io import shards as sh
    from flameqa.io.media import probe
    from flameqa.runner import run_stage_local

    if pool not in ("workers", "inner"):
        raise ValueError(f"pool must be 'workers' or 'inner', not {pool!r}")
    inner = pool == "inner"
    base = cfg or PipelineConfig()
    # exactly ``workers`` processes: executor workers without inner helpers, or the other way round
    cfg = base.model_copy(update={"runner": base.runner.model_copy(update={
        "workers": 1 if inner else workers, "inner_processes": workers if inner else 1, "overwrite": True})})
    p = probe(video)
    if not p.duration_s:
        raise ValueError(f"{video}: unknown duration")
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out = Path(tmp)
        piece = p.duration_s / workers
        clips = [dict(
            clip_id=f"bench.c{k:03d}", video_id="bench", path=str(video), start_s=k * piece, end_s=(k + 1) * piece,
            fps=cfg.ingest.fps, width=p.width, height=p.height, rotation=p.rotation, status="ok",
        ) for k in range(workers)]
        for k, rows in enumerate([clips] if inner else [[c] for c in clips]):
            sh.write_shard(out, "clips", k, rows)
            sh.write_marker(out, "clips", k, {"config_hash": "bench", "rows": len(rows)})
        c0, t0 = _cpu(), time.perf_counter()
        report = run_stage_local("faces", cfg, out)
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
        if report.failed_shards:
            raise RuntimeError(f"bench: faces shards failed: {[s.error for s in report.failed_shards]}")
        frames = sum(int((sh.read_marker(out, "faces", k) or {}).get("extra", {}).get("frames", 0)) for k in range(1 if inner else workers))
    return frames / dt, frames, dt, cpu / max(frames, 1) * 1e3


def bench_faces(video: str | Path, workers: int = 1, cfg: Any = None, max_frames: int | None = None, pool: str = "workers") -> dict[str, Any]:
    """``{"landmarker_fps", "stage_fps", "workers", ...}`` for ``video`` (see the module docstring
    and :func:`stage_fps` for ``pool``)."""
    from flameqa.config import PipelineConfig

    cfg = cfg or PipelineConfig()
    load_before = os.getloadavg()[0]
    lm = landmarker_fps(video, cfg.faces.landmarker, max_frames, fps=cfg.ingest.fps)
    sfps, sframes, secs, scpu = stage_fps(video, workers, cfg, pool=pool)
    return {
        "landmarker_fps": round(lm["fps"], 2),
        "stage_fps": round(sfps, 2),
        "workers": workers,
        "pool": pool,
        "stage_frames": sframes,
        "stage_seconds": round(secs, 2),
        "landmarker_frames": lm["frames"],
        # the bare C call the stage makes: the tighter ceiling (no Python result objects)
        "landmarker_c_fps": round(lm["c_fps"], 2),
        # CPU per frame (all processes): what bounds throughput once every core is busy
        "landmarker_cpu_ms": round(lm["cpu_ms"], 2),
        "landmarker_c_cpu_ms": round(lm["c_cpu_ms"], 2),
        "stage_cpu_ms": round(scpu, 2),
        "det_score_every": cfg.faces.landmarker.det_score_every,
        "cpus": os.cpu_count(),
        # the 1-minute load average before and after: figures from a busy machine are not comparable
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "video": str(video),
    }
