"""Faces-stage throughput: raw MediaPipe fps vs end-to-end stage fps, one and two workers.

    python bench/faces.py --video talk.mp4            # prints one JSON line per worker count
    python bench/faces.py --synth /tmp/talk720.mp4    # first compose a 60 s 1280x720 talking head
                                                      # from the GRID clips in ../shared/data
    python bench/faces.py --steadiness                # landmark shake per GRID clip, the graph
                                                      # for the faces seen vs one looking for 4

Targets (issue 6): stage_fps(1 worker) ≥ 0.9 × landmarker_fps; stage_fps(2) ≥ 1.7 × stage_fps(1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flameqa.vision.bench import bench_faces

GRID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "face_video" / "grid"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path)
    ap.add_argument("--synth", type=Path, help="compose a talking-head video here from GRID clips, then bench it")
    ap.add_argument("--size", default="1280x720", help="canvas of --synth, WxH")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of --synth")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steadiness", action="store_true", help="landmark acceleration per GRID clip, adapt_faces on and off")
    args = ap.parse_args()
    if args.steadiness:
        steadiness_runs()
        return
    video = args.video
    if args.synth:
        from flameqa.vision.synth import talking_head_video

        w, h = (int(v) for v in args.size.split("x"))
        talking_head_video(args.synth, sorted(GRID.glob("*.mpg")), args.seconds, size=(w, h), face_height=0.9)
        video = args.synth
    if video is None:
        ap.error("give --video or --synth")
    runs = [bench_faces(video, workers=n) for n in args.workers]
    for r in runs:
        print(json.dumps(r))
    one = next((r for r in runs if r["workers"] == 1), None)
    if one:
        print(json.dumps({"stage_over_landmarker_1w": round(one["stage_fps"] / one["landmarker_fps"], 3),
                          **{f"speedup_{r['workers']}w": round(r["stage_fps"] / one["stage_fps"], 3) for r in runs if r["workers"] > 1}}))


def steadiness_runs() -> None:
    """One JSON line per GRID clip: landmark acceleration / IOD and CPU ms a frame with the graph
    for the faces seen (``adapt_faces``) and with one always looking for ``max_faces`` (4)."""
    from flameqa.vision.bench import steadiness
    from flameqa.vision.config import LandmarkerConfig

    ratios = []
    for clip in sorted(GRID.glob("*.mpg")):
        r = {a: steadiness(clip, LandmarkerConfig(adapt_faces=a)) for a in (True, False)}
        ratios.append(r[True]["acceleration_per_iod"] / r[False]["acceleration_per_iod"])
        print(json.dumps({"clip": clip.stem, **{f"{k}_{'adapt' if a else 'max_faces'}": round(v, 5) for a in r for k, v in r[a].items()}}))
    if ratios:
        print(json.dumps({"acceleration_adapt_over_max_faces": [round(x, 3) for x in ratios]}))


if __name__ == "__main__":
    main()
