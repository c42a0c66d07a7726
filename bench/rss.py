"""Peak memory of every stage on one long input, measured by the OS (issue 10: ≤ 2 GB for 1 hour).

A long talking-head video is made cheaply: the shipped GRID clips (../shared/data/face_video/grid),
downscaled to 180×144, looped with their audio to ``--minutes`` (default 60). Then each stage runs
alone in its own process over the same OUT (ingest → speech → faces → speakers → fit → assemble →
export), and its peak resident set size is read from the kernel's accounting of that process
(``os.wait4`` → ``ru_maxrss``, the same number as ``VmHWM``). Prints one line per stage and a JSON
object; exits 1 when a stage fails or goes over ``--limit-mib``.

``--whole`` also measures ``flameqa run`` of the whole pipeline in one process (stages that do not
depend on each other run at the same time there, so their peaks add up).

Usage: python bench/rss.py [--minutes 60] [--out DIR] [--keep] [--limit-mib 2048] [--whole | --only-whole]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT.parent / "shared" / "data" / "face_video" / "grid"
STAGES = ["ingest", "speech", "faces", "speakers", "fit", "assemble"]

STAGE_SCRIPT = """
import os, sys
from flameqa.config import load_config
from flameqa.logs import setup_logging
from flameqa.runner import run_pipeline
setup_logging("WARNING")
stage = os.environ["FLAMEQA_BENCH_STAGE"]
cfg = load_config(sys.argv[1], sys.argv[4:])
rep = run_pipeline(cfg, sys.argv[2], inputs=sys.argv[3] or None, stages=[stage], show_progress=False)
sys.exit(0 if rep.ok else 1)
"""
EXPORT_SCRIPT = """
import sys
from flameqa.export.hub_folder import export_dataset
from flameqa.logs import setup_logging
setup_logging("WARNING")
export_dataset(sys.argv[1], sys.argv[2])
"""


def make_long_video(dest: Path, minutes: float, size: tuple[int, int] = (180, 144), fps: int = 25) -> dict:
    """Loop the GRID clips (video + audio) to ``minutes``; returns what was made."""
    import av

    from flameqa.io.media import extract_audio, iter_frames, read_wav

    clips = sorted(GRID.glob("*.mpg"))
    if not clips:
        raise SystemExit(f"no GRID clips in {GRID} (../shared/data beside the project root)")
    frames, audio = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for c in clips:
            frames.append(np.stack([f for _, _, f in iter_frames(c, fps=fps, size=size)]))
            extract_audio(c, Path(tmp) / "a.wav", 16000)
            x, _ = read_wav(Path(tmp) / "a.wav")
            n = int(round(len(frames[-1]) / fps * 16000))
            audio.append(np.pad(x, (0, max(0, n - len(x))))[:n].astype(np.float32))
    total = int(minutes * 60 * fps)
    t0 = time.perf_counter()
    with av.open(str(dest), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        ast = out.add_stream("aac", rate=16000)
        ast.layout = "mono"
        apts, k, i = 0, 0, 0
        while i < total:
            block, sound = frames[k % len(frames)], audio[k % len(audio)]
            n = min(len(block), total - i)
            for img in block[:n]:
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            sound = sound[: int(round(n / fps * 16000))]
            for j in range(0, len(sound), 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[None, j : j + 1024]), format="fltp", layout="mono")
                fr.sample_rate, fr.pts = 16000, apts
                apts += fr.samples
                for p in ast.encode(fr):
                    out.mux(p)
            i += n
            k += 1
        for s in (vs, ast):
            for p in s.encode():
                out.mux(p)
    return {"path": str(dest), "minutes": minutes, "size": f"{size[0]}x{size[1]}", "frames": total, "bytes": dest.stat().st_size, "encode_s": round(time.perf_counter() - t0, 1)}


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, float]:
    """Run ``cmd``; returns (exit status, peak RSS of the process in MiB by the kernel's accounting,
    peak summed RSS of the process and its descendants in MiB sampled every 0.2 s, seconds).

    The second figure counts helper processes (the faces stage's clip pool, runner workers): the
    kernel's ``ru_maxrss`` of a waited process covers its largest descendant, not their sum.
    """
    from flameqa.bench.pipeline import PeakRss

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env)
    with PeakRss(p.pid, interval=0.2) as tree:
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_maxrss / 1024.0, tree.peak / 2**20, time.perf_counter() - t0  # Linux: ru_maxrss in KiB


def _measure(name: str, cmd: list[str], env: dict[str, str]) -> dict:
    rc, proc, tree, secs = run_measured(cmd, env)
    peak = max(proc, tree)
    print(f"{name:9s} peak RSS {peak:8.1f} MiB (process {proc:.1f}, with helpers {tree:.1f})  {secs:7.1f} s  exit {rc}", flush=True)
    return {"stage": name, "peak_rss_mib": round(peak, 1), "process_peak_rss_mib": round(proc, 1), "tree_peak_rss_mib": round(tree, 1), "seconds": round(secs, 1), "exit": rc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=None, help="Work folder (default: a temp folder, removed unless --keep).")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "demo.yaml")
    ap.add_argument("--limit-mib", type=float, default=2048.0)
    ap.add_argument("--set", action="append", default=[], help="Config override for every stage (section.key=value).")
    ap.add_argument("--whole", action="store_true", help="Also run the whole pipeline in one process (`flameqa run`, stages concurrent as configured) on a fresh OUT.")
    ap.add_argument("--only-whole", action="store_true", help="Only the whole-pipeline run (skip the stage-by-stage runs).")
    a = ap.parse_args()

    work = a.out or Path(tempfile.mkdtemp(prefix="flameqa-rss-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / f"long_{a.minutes:g}min.mp4"
    made = make_long_video(video, a.minutes)
    print(f"input: {made['minutes']:g} min, {made['size']}, {made['frames']} frames, {made['bytes'] / 2**20:.1f} MiB (encoded in {made['encode_s']} s)", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "FLAMEQA_LOG": "WARNING"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    run = work / "run"
    results = []
    sets = ["ingest.videos_per_shard=1", *a.set]
    if not a.only_whole:
        for stage in STAGES:
            cmd = [sys.executable, "-c", STAGE_SCRIPT, str(a.pipeline), str(run), str(video) if stage == "ingest" else "", *sets]
            results.append(_measure(stage, cmd, {**env, "FLAMEQA_BENCH_STAGE": stage}))
        results.append(_measure("export", [sys.executable, "-c", EXPORT_SCRIPT, str(run), str(work / "export")], env))

    if a.whole or a.only_whole:
        cmd = [sys.executable, "-m", "flameqa", "run", str(a.pipeline), "--input", str(video), "--out", str(work / "whole")]
        for o in sets:
            cmd += ["--set", o]
        results.append(_measure("whole run", cmd, {**env, "FLAMEQA_LOG": "ERROR"}))

    from flameqa.inspect import summarize

    rows = {t: i["rows"] for t, i in summarize(work / "whole" if a.only_whole else run).items()}
    worst = max(r["peak_rss_mib"] for r in results)
    ok = all(r["exit"] == 0 for r in results) and worst <= a.limit_mib
    report = {
        "input": made,
        "stages": results,
        "rows": rows,
        "max_peak_rss_mib": worst,
        "limit_mib": a.limit_mib,
        "ok": ok,
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} mem={os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "measure": "peak_rss_mib = max(os.wait4 ru_maxrss of the stage's process (kernel accounting, = VmHWM), "
        "the summed RSS of it and its helper processes sampled every 0.2 s)",
    }
    print(json.dumps(report, indent=1))
    if not a.keep and a.out is None:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
