"""Frame reader throughput vs raw PyAV decode-to-ndarray and `ffmpeg -f null` on the same file.

Prints one JSON object. Goal (issue 2): reader ≥ 90 % of PyAV decode-to-ndarray fps.
Usage: python bench/frame_reader.py [VIDEO] [--seconds 20] [--size 1280x720]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def make_talking_video(path: Path, seconds: float, w: int, h: int, fps: int = 25) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(int(seconds * fps)):
            img = np.stack([(xx + 3 * i) % 256, (yy + i) % 256, ((xx + yy) // 4) % 256], -1).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video", nargs="?")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import av

    from flameqa.io.media import iter_frames, probe

    tmp = tempfile.TemporaryDirectory()
    path = Path(a.video) if a.video else Path(tmp.name) / "bench.mp4"
    if not a.video:
        w, h = map(int, a.size.split("x"))
        make_talking_video(path, a.seconds, w, h)
    p = probe(path)

    def pyav_ndarray():
        n = 0
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            for f in c.decode(vs):
                f.to_ndarray(format="rgb24")
                n += 1
        return n

    def reader():
        return sum(1 for _ in iter_frames(path, fps=p.fps or 25))

    def ffmpeg_null():
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], check=True)
        return None

    res = {}
    for name, fn in (("pyav_ndarray", pyav_ndarray), ("reader", reader), ("ffmpeg_null", ffmpeg_null)):
        if name == "ffmpeg_null" and not shutil.which("ffmpeg"):
            continue
        best = None
        for _ in range(a.repeat):
            t = time.perf_counter()
            n = fn()
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        frames = n if n is not None else int(round((p.duration_s or 0) * (p.fps or 25)))
        res[f"{name}_fps"] = round(frames / best, 1)
    res["reader_vs_pyav"] = round(res["reader_fps"] / res["pyav_ndarray_fps"], 3)
    if "ffmpeg_null_fps" in res:
        res["reader_vs_ffmpeg_null"] = round(res["reader_fps"] / res["ffmpeg_null_fps"], 3)
    res.update(video=str(path) if a.video else f"synthetic {a.size} {a.seconds}s", machine=f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
