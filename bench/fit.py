"""Fit-stage benchmark with ground truth: synthetic talking-head FLAME sequences on the demo head
(or a FLAME file), projected to 512×512 with σ = 1 px landmark noise, fitted; one JSON line per run.

    python bench/fit.py                               # 10,000 frames, CPU, tracking + dataset presets
    python bench/fit.py --frames 100000 --device cuda --presets tracking
    python bench/fit.py --grid                        # also: GRID clips' jitter ratio / NME (real MediaPipe)

Targets (issue 4): frames_per_s ≥ 1,000 on a 2-core CPU (≥ 100,000 on an H100-class GPU);
landmark_rmse_px ≤ 1.05 × noise_rms_px; jaw_err_deg ≤ 1; vertex_err_mm ≤ 1 (tracking preset). GRID:
jitter_ratio ≤ 0.5 with NME ≤ 2% (default, dataset preset). Anchor: flame-head-tracker's schedule,
0.19 s/frame batched on this 2-core CPU (5.3 frames/s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANCHOR_FPS = 5.3  # flame-head-tracker stage-2 schedule, batched ten at a time, this CPU (docs/FLAME.md)


def grid_report() -> list[dict]:
    """Jitter ratio and NME per GRID clip with real MediaPipe landmarks, default fit config."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import FitStage
    from flameqa.io.schema import conform
    from flameqa.stages.base import StageContext
    from tests.fit.mediapipe_util import GRID_DIR, cached_face_landmarks

    rows = []
    for video in sorted(GRID_DIR.glob("*.mpg")):
        d = cached_face_landmarks(video, ROOT / ".cache" / "fit_mediapipe")
        t = len(d["detected"])
        rows.append({
            "clip_id": video.stem, "video_id": video.stem, "track_id": 0, "segment": 0, "fps": float(d["fps"]),
            "image_width": int(d["width"]), "image_height": int(d["height"]), "frame_idx": list(range(t)),
            "detected": d["detected"].tolist(), "det_score": [1.0] * t, "landmarks": d["landmarks"].reshape(t, -1),
            "blendshapes": np.nan_to_num(d["blendshapes"]).reshape(t, -1), "transform": d["transform"].reshape(t, -1),
            "flags": [], "status": "ok", "error": None,
        })
    stage = FitStage(FitConfig(device="cpu"), StageContext(out=ROOT))
    out = stage(conform("faces", rows), {})["flame"].to_pylist()
    return [{"clip": r["clip_id"], "jitter_ratio": r["jitter_ratio"], "nme": float(np.nanmean(np.asarray(r["nme"], float)))} for r in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--presets", nargs="+", default=["tracking", "dataset"])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="CPU processes (one torch thread each)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per preset (the machine may be shared: report the best)")
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args()

    from flameqa.fit.config import FitConfig
    from flameqa.fit.synth import run_benchmark

    for preset in args.presets:
        best = None
        for _ in range(args.repeat):
            cfg = FitConfig.model_validate({"smooth": {"preset": preset}})
            res = run_benchmark(args.frames, device=args.device, model=args.model, config=cfg,
                                workers=args.workers if args.device == "cpu" else 1)
            if best is None or res["frames_per_s"] > best["frames_per_s"]:
                best = res
        best["speedup_vs_anchor"] = best["frames_per_s"] / ANCHOR_FPS
        best["load_avg_1min"] = os.getloadavg()[0]
        print(json.dumps(best), flush=True)
    if args.grid:
        print(json.dumps({"grid": grid_report()}), flush=True)


if __name__ == "__main__":
    main()
