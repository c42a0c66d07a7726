"""The same pipeline on the local executor and on Ray (in-process), on the GRID clips.

    python bench/ray_overhead.py [--clips 5] [--videos-per-shard 1] [--num-cpus 2] [--stages ingest speech ...]

Runs every registered stage (or ``--stages``) three times over the same inputs: local with one
process, local with ``--num-cpus`` processes, Ray with ``--num-cpus`` CPUs. Prints one JSON object:
wall seconds per stage and executor, Ray's start-up time, the overhead ratio (Ray wall / local wall
with the same number of processes, Ray start-up excluded and included), and per-stage throughput
from the local one-process run's shard timings (model loading excluded): frames/s for faces and
fit, real-time factor for speech. Numbers on a small input are dominated by per-actor start-up.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT.parent / "shared" / "data" / "face_video" / "grid"


def landed_stages(names) -> list[str]:
    from flameqa.stages import STAGES

    out = []
    for n in names:
        try:
            importlib.import_module(STAGES[n].split(":")[0])
            out.append(n)
        except ImportError as e:
            print(f"skipping stage {n}: {e}", file=sys.stderr)
    return out


def run_all(executor: str, workers: int, out: Path, inputs: list[str], stages: list[str], over: list[str]) -> dict[str, float]:
    from flameqa.config import load_config
    from flameqa.runner import run_pipeline

    cfg = load_config(ROOT / "pipelines" / "demo.yaml", [f"runner.executor={executor}", f"runner.workers={workers}", *over])
    times: dict[str, float] = {}
    for s in stages:
        t0 = time.perf_counter()
        rep = run_pipeline(cfg, out, inputs=inputs, stages=[s], show_progress=False)
        times[s] = round(time.perf_counter() - t0, 2)
        bad = [r.error for st in rep.stages for r in st.shards if r.error]
        if bad:
            raise SystemExit(f"{executor}: stage {s} failed: {bad[0]}")
    return times


def throughput(out: Path) -> dict[str, float]:
    """Per-stage speed from the shard markers (processing time only, models already loaded)."""
    from flameqa.io import shards as sh

    clips = sh.read_table(out, "clips").to_pylist()
    frames = sum(round((c["end_s"] - c["start_s"]) * c["fps"]) for c in clips)
    audio_s = sum(c["end_s"] - c["start_s"] for c in clips)

    def secs(table: str) -> float:
        return sum((sh.read_marker(out, table, i) or {}).get("seconds", 0.0) for i in sh.completed_shards(out, table))

    res: dict[str, float] = {"frames": frames, "audio_s": round(audio_s, 2)}
    if sh.completed_shards(out, "faces"):
        res["faces_fps"] = round(frames / max(secs("faces"), 1e-9), 1)
    if sh.completed_shards(out, "speech"):
        res["speech_rtf"] = round(secs("speech") / max(audio_s, 1e-9), 3)
    if sh.completed_shards(out, "flame"):
        res["fit_fps"] = round(frames / max(secs("flame"), 1e-9), 1)
    if sh.completed_shards(out, "videos"):
        res["ingest_video_s_per_s"] = round(audio_s / max(secs("videos"), 1e-9), 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=5, help="GRID clips to use (3 s each)")
    ap.add_argument("--videos-per-shard", type=int, default=1)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--object-store-mb", type=int, default=256)
    ap.add_argument("--stages", nargs="+", default=None)
    ap.add_argument("--set", dest="over", action="append", default=[], help="extra config override (repeatable)")
    args = ap.parse_args()

    clips = sorted(GRID.glob("*.mpg"))[: args.clips]
    if not clips:
        raise SystemExit(f"no GRID clips under {GRID} (../shared/data beside the project root)")
    from flameqa.config import load_config

    stages = landed_stages(args.stages or load_config(ROOT / "pipelines" / "demo.yaml").stages)
    over = [f"ingest.videos_per_shard={args.videos_per_shard}", *args.over]
    inputs = [str(c) for c in clips]
    tmp = Path(tempfile.mkdtemp(prefix="fq-bench-", dir="/tmp"))
    try:
        local1 = run_all("local", 1, tmp / "local1", inputs, stages, over)
        localn = run_all("local", args.num_cpus, tmp / "localn", inputs, stages, over)

        from flameqa.config import RayConfig
        from flameqa.executors.ray import init_ray, shutdown_ray

        t0 = time.perf_counter()
        init_ray(RayConfig(num_cpus=args.num_cpus, object_store_memory=args.object_store_mb << 20, temp_dir=str(tmp / "ray")))
        ray_init = round(time.perf_counter() - t0, 2)
        ray_t = run_all("ray", 1, tmp / "ray_out", inputs, stages, [*over, f"ray.num_cpus={args.num_cpus}"])
        shutdown_ray()

        tot = {k: round(sum(v.values()), 2) for k, v in (("local_1", local1), (f"local_{args.num_cpus}", localn), ("ray", ray_t))}
        result = {
            "bench": "ray_overhead",
            "machine": f"{platform.machine()} {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f} at end",
            "input": f"{len(clips)} GRID clips ({len(clips) * 3} s, 360x288 25 fps), {args.videos_per_shard} video(s) per shard",
            "stages": stages,
            "seconds": {"local_1": local1, f"local_{args.num_cpus}": localn, "ray": ray_t},
            "total_s": tot,
            "ray_init_s": ray_init,
            "overhead_ratio": round(tot["ray"] / tot[f"local_{args.num_cpus}"], 2),
            "overhead_ratio_with_init": round((tot["ray"] + ray_init) / tot[f"local_{args.num_cpus}"], 2),
            "ray_vs_local_1": round(tot["ray"] / tot["local_1"], 2),
            # start-up per stage: actor processes import the stack and load their models
            "ray_minus_local_1_per_stage_s": {s: round(ray_t[s] - local1[s], 2) for s in stages},
            "throughput_local_1": throughput(tmp / "local1"),
        }
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
