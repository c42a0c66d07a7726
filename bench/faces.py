"""Faces-stage throughput: raw MediaPipe fps vs end-to-end stage fps, one and two workers.

    python bench/faces.py --video talk.mp4            # prints one JSON line per worker count
    python bench/faces.py --synth /tmp/talk720.mp4    # first compose a 60 s 1280x720 talking head
                                                      # from the GRID clips in ../shared/data
    python bench/faces.py --steadiness                # landmark shake per GRID clip, the graph
                                                      # for the faces seen vs one looking for 4
    python bench/faces.py --video one_shot.mp4 --pieces 0 30 --workers 2
                                                      # the video as ONE clip, faces.piece_s A/B

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
    ap.add_argument("--pieces", type=float, nargs="+", help="faces.piece_s values to alternate on the video as one clip")
    ap.add_argument("--rounds", type=int, default=2)
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
    if args.pieces:
        for _ in range(args.rounds):
            for piece_s in args.pieces:
                print(json.dumps(one_clip_run(video, piece_s, max(args.workers))), flush=True)
        return
    runs = [bench_faces(video, workers=n) for n in args.workers]
    for r in runs:
        print(json.dumps(r))
    one = next((r for r in runs if r["workers"] == 1), None)
    if one:
        print(json.dumps({"stage_over_landmarker_1w": round(one["stage_fps"] / one["landmarker_fps"], 3),
                          **{f"speedup_{r['workers']}w": round(r["stage_fps"] / one["stage_fps"], 3) for r in runs if r["workers"] > 1}}))


def one_clip_run(video: Path, piece_s: float, processes: int) -> dict:
    """The faces stage on the whole video as one clip (one shot) over ``processes`` processes."""
    import os
    import tempfile
    import time

    import pyarrow as pa

    from flameqa.io.media import probe
    from flameqa.stages.base import StageContext
    from flameqa.vision.config import FacesConfig
    from flameqa.vision.stage import FacesStage

    p = probe(video)
    row = dict(clip_id="one.c000", video_id="one", path=str(video), audio_path=None, start_s=0.0, end_s=p.duration_s, fps=25.0,
               width=p.width, height=p.height, rotation=p.rotation, status="ok", error=None)

    def cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        stage = FacesStage(FacesConfig(piece_s=piece_s), StageContext(out=Path(tmp), extra={"processes": processes}))
        c0, t0 = cpu(), time.perf_counter()
        try:
            out = stage(pa.Table.from_pylist([row]), {})["faces"]
        finally:
            stage.close()  # helpers joined: their CPU is counted
        wall, used = time.perf_counter() - t0, cpu() - c0
    frames = sum(len(f) for f in out.column("frame_idx").to_pylist())
    return {"piece_s": piece_s, "processes": processes, "fps": round(frames / wall, 2), "wall_s": round(wall, 2), "cpu_s": round(used, 2),
            "frames": frames, "rows": out.num_rows, "tracks": sorted(set(out.column("track_id").to_pylist())),
            "load": [round(load, 2), round(os.getloadavg()[0], 2)]}


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
