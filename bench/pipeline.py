"""Whole-pipeline throughput on a talking-head video; prints one JSON object per run.

    python bench/pipeline.py --video talk.mp4 [--repeat 10]       # = flameqa bench pipeline --json
    python bench/pipeline.py --synth /tmp/talk720.mp4             # first compose a 60 s 1280x720 25 fps
                                                                  # talking head from data/demo/grid
    python bench/pipeline.py --video talk.mp4 --ab runner.concurrent_stages=false runner.concurrent_stages=true --rounds 2
                                                                  # A/B: alternate two settings, same video

The 720p input: each 360x288 GRID clip scaled to 900x720 and centred on a black 1280x720 canvas,
the four clips looped (a cut every ~3 s where the speaker changes: a worst case for per-clip costs).
``--single-shot`` plays one clip back and forth instead (no cut: one clip for the whole video).
Targets (issue 11): realtime_factor ≥ 4 on 2 CPU cores at 720p25, ≥ 0.8 × bottleneck_limit_realtime,
peak_rss_mb ≤ 2048 for an hour of input.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "data" / "demo" / "grid"


def single_shot_video(dest: Path, clip: Path, seconds: float, size: tuple[int, int]) -> None:
    """One GRID clip played forwards then backwards (no cut) to ``seconds``, scaled into ``size``;
    the audio is the clip's own, looped."""
    import cv2
    import numpy as np

    from flameqa.vision.synth import SAMPLE_RATE, load_clip, write_video

    c = load_clip(clip)
    W, H = size
    order = list(range(c.n)) + list(range(c.n - 2, 0, -1))
    n = int(round(seconds * c.fps))

    def frames():
        for i in range(n):
            f = c.frames[order[i % len(order)]]
            tw = min(W, int(round(f.shape[1] * H / f.shape[0])))
            canvas = np.zeros((H, W, 3), np.uint8)
            x0 = (W - tw) // 2
            canvas[:, x0 : x0 + tw] = cv2.resize(f, (tw, H), interpolation=cv2.INTER_LINEAR)
            yield canvas

    reps = int(np.ceil(seconds * SAMPLE_RATE / max(1, len(c.audio))))
    write_video(dest, frames(), c.fps, np.tile(c.audio, reps)[: int(seconds * SAMPLE_RATE)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path)
    ap.add_argument("--synth", type=Path, help="compose the 720p talking head here (if absent), then bench it")
    ap.add_argument("--single-shot", action="store_true", help="--synth: one clip back and forth, no cuts")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of --synth")
    ap.add_argument("--size", default="1280x720", help="canvas of --synth, WxH")
    ap.add_argument("--repeat", type=int, default=1, help="concatenate this many copies of the video")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--videos", type=int, default=1, help="feed the video this many times as separate inputs")
    ap.add_argument("--limit", action="append", default=None, help="raw engines to time: bottleneck (default), all, none, stage names")
    ap.add_argument("--ab", nargs=2, metavar=("A", "B"), help="two overrides (k=v[,k=v]) to alternate")
    ap.add_argument("--rounds", type=int, default=1, help="--ab: A,B rounds")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from flameqa.bench.pipeline import bench_pipeline
    from flameqa.config import load_config

    video = a.video
    if a.synth:
        if not a.synth.exists():
            w, h = (int(v) for v in a.size.split("x"))
            clips = sorted(GRID.glob("*.mpg"))
            if a.single_shot:
                single_shot_video(a.synth, clips[0], a.seconds, (w, h))
            else:
                from flameqa.vision.synth import talking_head_video

                talking_head_video(a.synth, clips, a.seconds, size=(w, h), face_height=1.0)
        video = a.synth
    if video is None:
        ap.error("give --video or --synth")
    limits = a.limit or ["bottleneck"]
    if not a.ab:
        cfg = load_config(a.config, a.overrides)
        print(json.dumps(bench_pipeline(video, a.repeat, cfg, a.workers, limits=limits, videos=a.videos)))
        return
    runs: dict[str, list[dict]] = {a.ab[0]: [], a.ab[1]: []}
    for _ in range(a.rounds):
        for side in a.ab:
            cfg = load_config(a.config, [*a.overrides, *side.split(",")])
            r = bench_pipeline(video, a.repeat, cfg, a.workers, limits=["none"], videos=a.videos)
            r["ab"] = side
            runs[side].append(r)
            print(json.dumps(r), flush=True)
    best = {k: min(v, key=lambda r: r["wall_seconds"]) for k, v in runs.items()}
    A, B = (best[s] for s in a.ab)
    print(json.dumps({
        "a": a.ab[0], "b": a.ab[1], "rounds": a.rounds,
        "wall_a_over_b": round(A["wall_seconds"] / B["wall_seconds"], 3),
        "cpu_a_over_b": round(A["cpu_seconds"] / B["cpu_seconds"], 3),
        "best_wall": [A["wall_seconds"], B["wall_seconds"]],
        "loads": [[r["load_average_before"][0], r["load_average"][0]] for s in a.ab for r in runs[s]],
    }))


if __name__ == "__main__":
    main()
