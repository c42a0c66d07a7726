"""Throughput of the faces stage against raw MediaPipe on the same video.

* ``landmarker_fps``: MediaPipe FaceLandmarker alone (VIDEO mode, same options as the stage) on
  frames decoded beforehand (at the size the stage would use): ``mp.Image`` from the array, then
  ``detect_for_video``, nothing else — the ceiling for the stage.
* ``stage_fps``: the whole ``faces`` stage through the local executor — decode, landmarks,
  detection scores, tracking, Parquet writing, and for ``workers > 1`` the process pool's start —
  over the video cut into ``workers`` equal clips (one shard each), frames / wall seconds.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the pool's workers, once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def landmarker_fps(video: str | Path, cfg: Any = None, max_frames: int = 250) -> tuple[float, int, float]:
    """Raw FaceLandmarker fps on up to ``max_frames`` pre-decoded frames; returns (fps, frames, cpu ms/frame)."""
    import mediapipe as mp

    from flameqa.io.media import iter_frames, probe
    from flameqa.vision.config import LandmarkerConfig
    from flameqa.vision.landmarker import FaceLandmarker
    from flameqa.vision.stage import detection_size

    cfg = cfg or LandmarkerConfig()
    p = probe(video)
    size = detection_size(p.width or 0, p.height or 0, cfg.max_side) if p.width and p.height else None
    dec = None if size is None else (size[::-1] if p.rotation in (90, 270) else size)
    images = []
    for _, _, img in iter_frames(video, rotation=p.rotation, size=dec):
        images.append(img)
        if len(images) >= max_frames:
            break
    if not images:
        raise ValueError(f"{video}: no frames decoded")
    with FaceLandmarker(cfg) as lm:
        lm.start_clip()
        graph = lm._lm  # the bare MediaPipe graph: nothing of ours in the timed loop
        warm = min(10, len(images))
        for i in range(warm):  # the first calls initialise the graph
            graph.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=images[i]), i * 40)
        c0, t0 = _cpu(), time.perf_counter()
        for i, img in enumerate(images):
            graph.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=img), (warm + i) * 40)
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
    return len(images) / dt, len(images), cpu / len(images) * 1e3


def stage_fps(video: str | Path, workers: int = 1, cfg: Any = None, work_dir: str | Path | None = None) -> tuple[float, int, float, float]:
    """End-to-end ``faces`` stage fps with ``workers`` processes; returns (fps, frames, seconds, cpu ms/frame)."""
    from flameqa.config import PipelineConfig
    from flameqa.io import shards as sh
    from flameqa.io.media import probe
    from flameqa.runner import run_stage_local

    base = cfg or PipelineConfig()
    # exactly ``workers`` processes: no inner clip pool beside them (runner.inner_processes)
    cfg = base.model_copy(update={"runner": base.runner.model_copy(update={"workers": workers, "inner_processes": 1, "overwrite": True})})
    p = probe(video)
    if not p.duration_s:
        raise ValueError(f"{video}: unknown duration")
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out = Path(tmp)
        piece = p.duration_s / workers
        for k in range(workers):
            clip = dict(
                clip_id=f"bench.c{k:03d}", video_id="bench", path=str(video), start_s=k * piece, end_s=(k + 1) * piece,
                fps=cfg.ingest.fps, width=p.width, height=p.height, rotation=p.rotation, status="ok",
            )
            sh.write_shard(out, "clips", k, [clip])
            sh.write_marker(out, "clips", k, {"config_hash": "bench", "rows": 1})
        c0, t0 = _cpu(), time.perf_counter()
        report = run_stage_local("faces", cfg, out)
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
        if report.failed_shards:
            raise RuntimeError(f"bench: faces shards failed: {[s.error for s in report.failed_shards]}")
        frames = sum(int((sh.read_marker(out, "faces", k) or {}).get("extra", {}).get("frames", 0)) for k in range(workers))
    return frames / dt, frames, dt, cpu / max(frames, 1) * 1e3


def bench_faces(video: str | Path, workers: int = 1, cfg: Any = None, max_frames: int = 250) -> dict[str, Any]:
    """``{"landmarker_fps", "stage_fps", "workers", ...}`` for ``video`` (see the module docstring)."""
    from flameqa.config import PipelineConfig

    cfg = cfg or PipelineConfig()
    load_before = os.getloadavg()[0]
    lfps, lframes, lcpu = landmarker_fps(video, cfg.faces.landmarker, max_frames)
    sfps, sframes, secs, scpu = stage_fps(video, workers, cfg)
    return {
        "landmarker_fps": round(lfps, 2),
        "stage_fps": round(sfps, 2),
        "workers": workers,
        "stage_frames": sframes,
        "stage_seconds": round(secs, 2),
        "landmarker_frames": lframes,
        # CPU per frame (all processes): what bounds throughput once every core is busy
        "landmarker_cpu_ms": round(lcpu, 2),
        "stage_cpu_ms": round(scpu, 2),
        "det_score_every": cfg.faces.landmarker.det_score_every,
        "cpus": os.cpu_count(),
        # the 1-minute load average before and after: figures from a busy machine are not comparable
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "video": str(video),
    }
