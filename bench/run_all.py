"""`make bench`: the benchmarks one after another (never two at once: they would slow each other),
each printing its JSON; a failing bench is reported and the others still run.

    python bench/run_all.py [--only pipeline faces ...] [--video talk720.mp4]

Without ``--video`` the 720p talking head of bench/pipeline.py is composed once under the system's
temp folder (60 s, 1280×720, from data/demo/grid). See bench/README.md for what each one measures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benches(video: Path) -> dict[str, list[str]]:
    return {
        "pipeline": [str(HERE / "pipeline.py"), "--synth", str(video), "--limit", "all"],
        "faces": [str(HERE / "faces.py"), "--video", str(video)],
        "frame_reader": [str(HERE / "frame_reader.py"), str(video)],
        "speech": [str(HERE / "speech_rtf.py"), "--minutes", "2"],
        "fit": [str(HERE / "fit.py")],
        "flame_forward": [str(HERE / "flame_forward.py")],
        "render": [str(HERE / "render.py")],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=Path(tempfile.gettempdir()) / "flameqa-bench-talk720.mp4")
    ap.add_argument("--only", nargs="+", default=None)
    a = ap.parse_args()
    todo = benches(a.video)
    if not a.video.exists():  # composed by the pipeline bench's --synth
        subprocess.run([sys.executable, str(HERE / "pipeline.py"), "--synth", str(a.video), "--limit", "none"], check=True, stdout=subprocess.DEVNULL)
    failed = []
    for name, args in todo.items():
        if a.only and name not in a.only:
            continue
        if not Path(args[0]).exists():
            print(f"# {name}: {args[0]} is absent, skipped", flush=True)
            continue
        print(f"# {name}: {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, *args])
        print(f"# {name}: exit {r.returncode} after {time.perf_counter() - t0:.0f} s", flush=True)
        if r.returncode:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main()
