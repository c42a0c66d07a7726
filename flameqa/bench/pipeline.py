"""End-to-end throughput of the whole pipeline on one talking-head video, next to its engines' limits.

:func:`bench_pipeline` runs every configured stage through :func:`flameqa.runner.run_pipeline` over
``video`` (``repeat`` copies of it, concatenated without re-encoding, for a longer input) into a
fresh folder, then times the raw engines of the stages on the same video, in the same process, right
after (never concurrently: they would slow each other down). It returns one JSON-ready dict:

* ``media_seconds`` / ``wall_seconds`` / ``realtime_factor`` (media / wall, all stages, models loads
  and process start-up included);
* ``peak_rss_mb``: the largest total resident memory of this process and its worker processes during
  the run (sampled with psutil every 0.1 s, and at least the kernel's ``ru_maxrss`` of this process
  and of its largest reaped child); ``peak_pss_mb``: the same total as proportional set size
  (pages shared between the processes, e.g. libraries, counted once; Linux; sampled every 1 s);
* ``stages``: per stage ``seconds`` (wall, model load included), ``items``, ``unit``,
  ``items_per_s`` and ``realtime`` (media seconds / stage seconds); with
  ``runner.concurrent_stages=false`` also ``cpu_seconds``, ``cores_used`` (CPU / wall) and
  ``peak_rss_mb`` (sampled, this process and its workers, while the stage ran) per stage;
* ``cpu_seconds`` (this process and its workers) and ``cpu_realtime_bound`` = media / (CPU / cores):
  what the run would reach with every core busy and nothing waiting — steadier than wall time on a
  shared machine;
* ``bottleneck``: the stage with the most wall seconds; ``bottleneck_limit_realtime``: the best
  real-time factor that stage's raw engine allows on this machine, from ``engine_limits``:

  - faces: MediaPipe FaceLandmarker alone on pre-decoded frames (``vision.bench.landmarker_fps``)
    × cores / ``ingest.fps`` (one landmarker per core, decode free);
  - speech: 1 / RTF of the ASR model alone (all its threads) on up to 120 s of the run's own audio;
  - ingest: PyAV decode-only fps (threaded) / the video's frame rate;
  - fit: frames / seconds of the fitter's solve alone, from the run's ``flame`` markers.

* ``machine``, ``cores``, ``load_average`` (1/5/15-minute, at the end of the run) and
  ``load_average_before``: figures from a loaded machine are not comparable.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# input


def concat_copies(src: str | os.PathLike, dest: str | os.PathLike, k: int) -> Path:
    """Write ``k`` back-to-back copies of ``src`` to ``dest`` by remuxing packets (no re-encode).

    Each copy's timestamps are shifted by the end time of the previous copy, per stream, in the
    stream's own time base, so the result plays as one ``k`` × longer video.
    """
    import av

    dest = Path(dest)
    with av.open(str(src)) as inp, av.open(str(dest), "w") as out:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        if not streams:
            raise ValueError(f"{src} has no audio or video stream to copy")
        target = {s.index: out.add_stream_from_template(s) for s in streams}
        offset = {s.index: 0 for s in streams}
        last_dts = {s.index: None for s in streams}
        for _ in range(k):
            inp.seek(0)
            end = dict(offset)
            for pkt in inp.demux(*streams):
                if pkt.dts is None:  # the demuxer's flush packet
                    continue
                i = pkt.stream.index
                pkt.dts += offset[i]
                if pkt.pts is not None:
                    pkt.pts += offset[i]
                if last_dts[i] is not None and pkt.dts <= last_dts[i]:
                    continue  # a duplicate at the seam (never seen on H.264/AAC mp4, but muxers reject it)
                last_dts[i] = pkt.dts
                end[i] = max(end[i], (pkt.pts if pkt.pts is not None else pkt.dts) + (pkt.duration or 0))
                pkt.stream = target[i]
                out.mux(pkt)
            offset = end
    return dest


# ---------------------------------------------------------------------------------------------
# measurement helpers


class PeakRss:
    """Largest total RSS of a process (``root`` pid; None: this one) and all its descendants,
    sampled in a thread; ``peak`` in bytes. Samples after the root has exited count as 0."""

    def __init__(self, root: int | None = None, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
        self._n = 0
        self.since_mark = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> int:
        import psutil

        try:
            me = psutil.Process(self.root)
            procs = [me, *me.children(recursive=True)]
        except psutil.NoSuchProcess:  # the measured process has exited
            return 0
        # PSS splits pages shared between processes (libraries, the spawned helpers' copies of
        # them) among their users, where the tree's RSS sum counts them in each; reading it parses
        # smaps (CPU this process would add to the run's figures), so once every 10 samples
        self._n += 1
        with_pss = self._n % 10 == 1
        total = pss = 0
        for p in procs:
            try:
                total += p.memory_info().rss
                if with_pss:
                    pss += getattr(p.memory_full_info(), "pss", 0)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak_pss = max(self.peak_pss, pss)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            v = self._sample()
            self.peak = max(self.peak, v)
            self.since_mark = max(self.since_mark, v)
            self._stop.wait(self.interval)

    @property
    def peak_pss_mb(self) -> float | None:
        return round(self.peak_pss / 2**20, 1) if self.peak_pss else None

    def mark(self) -> float:
        """Peak total RSS (MiB) sampled since the previous mark."""
        v, self.since_mark = self.since_mark, 0
        return round(v / 2**20, 1)

    def __enter__(self) -> "PeakRss":
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._sample())

    @property
    def peak_mb(self) -> float:
        # ru_maxrss is in KiB on Linux; the children figure is the largest single reaped child
        kernel = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
        return round(max(self.peak, kernel) / 2**20, 1)


def machine() -> str:
    """CPU model, core count and RAM of this machine, one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = ""
    try:
        import psutil

        ram = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    return f"{model}, {cores()} cores{ram}, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def cores() -> int:
    """CPUs this process may use (the runner's count, which sizes its inner processes)."""
    from flameqa.runner import available_cpus

    return available_cpus()


def _cpu() -> float:
    """User + system CPU seconds of this process and its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# what each stage did


def stage_items(out: Path, stage: str) -> tuple[float, str]:
    """``(items, unit)`` a stage processed in the run under ``out``, read from its tables/markers."""
    import pyarrow.compute as pc

    from flameqa.io import shards as sh

    def table(name: str, columns: list[str]):
        try:
            return sh.read_table(out, name, columns=columns)
        except Exception:  # noqa: BLE001 - a missing table counts as nothing done
            return None

    def ok(t):
        return t.filter(pc.equal(t.column("status"), "ok")) if t is not None and "status" in t.column_names else t

    if stage == "ingest":
        t = ok(table("videos", ["duration_s", "status"]))
        return (float(pc.sum(t.column("duration_s")).as_py() or 0.0) if t is not None else 0.0), "media_s"
    if stage == "speech":
        t = ok(table("clips", ["start_s", "end_s", "status"]))
        if t is None:
            return 0.0, "media_s"
        return float(pc.sum(pc.subtract(t.column("end_s"), t.column("start_s"))).as_py() or 0.0), "media_s"
    if stage == "faces":
        frames = sum(int((sh.read_marker(out, "faces", k) or {}).get("extra", {}).get("frames", 0)) for k in sh.completed_shards(out, "faces"))
        return float(frames), "frames"
    if stage == "speakers":
        t = table("faces", ["clip_id"])
        return (float(len(set(t.column("clip_id").to_pylist()))) if t is not None else 0.0), "clips"
    if stage == "fit":
        t = table("flame", ["frame_idx"])
        return (float(pc.sum(pc.list_value_length(t.column("frame_idx"))).as_py() or 0) if t is not None and t.num_rows else 0.0), "frames"
    if stage == "assemble":
        t = table("samples", ["sample_id"])
        return (float(t.num_rows) if t is not None else 0.0), "samples"
    return 0.0, "rows"


# ---------------------------------------------------------------------------------------------
# raw engines


def faces_limit(video: Path, cfg: Any, max_frames: int = 1000) -> dict[str, Any]:
    """Raw FaceLandmarker fps on pre-decoded frames spread over the video → real-time factor with
    one landmarker a core. The faster of MediaPipe's public call and the bare C call the stage makes
    (``vision.bench.landmarker_fps``) is the limit."""
    from flameqa.vision.bench import landmarker_fps

    lm = landmarker_fps(video, cfg.faces.landmarker, max_frames, fps=cfg.ingest.fps)
    fps = max(lm["fps"], lm["c_fps"])
    return {"engine": "mediapipe FaceLandmarker, pre-decoded frames (bare C call)", "fps": round(fps, 1), "api_fps": round(lm["fps"], 1),
            "frames": lm["frames"], "cpu_ms_per_frame": round(lm["c_cpu_ms"], 2), "realtime": round(fps * cores() / cfg.ingest.fps, 2)}


def speech_limit(out: Path, cfg: Any, max_s: float = 120.0) -> dict[str, Any] | None:
    """RTF of the ASR model alone on up to ``max_s`` of the run's extracted audio → 1 / RTF."""
    from flameqa.io.media import read_wav
    from flameqa.speech.asr import load_asr

    wavs = sorted((out / "media" / "audio").glob("*.wav"))
    if not wavs:
        return None
    x, sr = read_wav(wavs[0], 0.0, max_s)
    dur = x.size / sr
    if dur < 1.0:
        return None
    asr = load_asr(cfg.speech)
    asr.transcribe(x[: int(5 * sr)], [(0.0, min(5.0, dur))])  # warm-up
    t0 = time.perf_counter()
    asr.transcribe(x, [(0.0, dur)])
    rtf = (time.perf_counter() - t0) / dur
    return {"engine": f"{cfg.speech.asr_backend} {cfg.speech.asr_model} (ASR alone)", "audio_s": round(dur, 1), "rtf": round(rtf, 4), "realtime": round(1.0 / rtf, 2)}


def decode_limit(video: Path, max_s: float = 60.0) -> dict[str, Any]:
    """PyAV decode-only fps (FFmpeg's own threads) over up to ``max_s`` of ``video`` → real time."""
    import av

    n = 0
    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        rate = float(vs.average_rate or 25)
        t0 = time.perf_counter()
        for _ in c.decode(vs):
            n += 1
            if n >= max_s * rate:
                break
        dt = time.perf_counter() - t0
    return {"engine": "PyAV decode only (threaded)", "fps": round(n / dt, 1), "realtime": round(n / dt / rate, 2)}


def fit_limit(out: Path) -> dict[str, Any] | None:
    """The fitter's solve alone, from the run's ``flame`` markers (frames / solve seconds)."""
    from flameqa.config import load_config
    from flameqa.io import shards as sh

    best = None
    for k in sh.completed_shards(out, "flame"):
        x = (sh.read_marker(out, "flame", k) or {}).get("extra", {})
        if x.get("fit_seconds"):
            r = x.get("frames", 0) / x["fit_seconds"]  # per-worker running totals: the ratio is that worker's mean
            best = r if best is None else min(best, r)
    if not best:
        return None
    fps = load_config(out / "config.yaml").ingest.fps if (out / "config.yaml").exists() else 25.0
    return {"engine": "fitter solve (from the run's markers)", "fps": round(best, 1), "realtime": round(best / fps, 2)}


#: stages whose raw engine can be timed
ENGINES = ("ingest", "speech", "faces", "fit")


# ---------------------------------------------------------------------------------------------
# the benchmark


def bench_pipeline(
    video: str | os.PathLike,
    repeat: int = 1,
    cfg: Any = None,
    workers: int | None = None,
    work_dir: str | os.PathLike | None = None,
    keep: str | os.PathLike | None = None,
    limits: Sequence[str] = ("bottleneck",),
    landmarker_frames: int = 250,
    videos: int = 1,
) -> dict[str, Any]:
    """Run the pipeline over ``video`` (``repeat`` copies) and measure it; see the module docstring.

    Args:
        cfg: a :class:`flameqa.config.PipelineConfig` (default: the embedded defaults).
        workers: overrides ``runner.workers``.
        work_dir: where the temporary input copy and output folder go (default: the system's).
        keep: write the run's output here and keep it (default: a temporary folder, removed).
        limits: stages whose raw engine is timed after the run: ``"bottleneck"`` (only the slowest
            stage's), ``"all"``, ``"none"``, or stage names (of ``ENGINES``).
        videos: feed the (concatenated) video this many times, as separate inputs (hard links with
            their own names): several shards, so ``workers`` processes and overlapping stages have
            work to share, as in a run over many videos. ``media_seconds`` counts every copy.
    """
    from flameqa.config import PipelineConfig
    from flameqa.io.media import probe
    from flameqa.runner import RunReport, run_pipeline

    cfg = cfg or PipelineConfig()
    runner = {"overwrite": True, **({"workers": int(workers)} if workers else {})}
    cfg = cfg.model_copy(update={"runner": cfg.runner.model_copy(update=runner)})
    video = Path(video)
    if repeat < 1 or videos < 1:
        raise ValueError(f"repeat and videos must be ≥ 1, got {repeat} and {videos}")
    unknown = set(limits) - {"bottleneck", "all", "none", *ENGINES}
    if unknown:
        raise ValueError(f"limits: unknown {sorted(unknown)}; use bottleneck, all, none or stage names {list(ENGINES)}")
    tmp = tempfile.TemporaryDirectory(prefix="flameqa-bench-", dir=work_dir)
    try:
        src = video
        if repeat > 1:
            src = concat_copies(video, Path(tmp.name) / f"{video.stem}_x{repeat}{video.suffix or '.mp4'}", repeat)
        p = probe(src)
        inputs = [str(src)]
        if videos > 1:
            inputs = []
            for i in range(videos):
                link = Path(tmp.name) / "inputs" / f"{video.stem}_v{i:03d}{src.suffix}"
                link.parent.mkdir(exist_ok=True)
                try:
                    os.link(src, link)
                except OSError:  # another file system
                    shutil.copyfile(src, link)
                inputs.append(str(link))
        out = Path(keep) if keep else Path(tmp.name) / "out"
        if keep and out.exists():
            shutil.rmtree(out)
        load_before = _load()
        stage_cpu: dict[str, float] = {}
        stage_rss: dict[str, float] = {}
        with PeakRss() as rss:
            c0, t0 = _cpu(), time.perf_counter()
            if cfg.runner.concurrent_stages:
                report = run_pipeline(cfg, out, inputs=inputs, show_progress=False)
            else:
                # one stage at a time anyway: run them one by one to get each stage's CPU seconds
                report = RunReport(out=out)
                for name in cfg.stages:
                    c1, _ = _cpu(), rss.mark()
                    r = run_pipeline(cfg, out, inputs=inputs, stages=[name], show_progress=False)
                    stage_cpu[name], stage_rss[name] = _cpu() - c1, rss.mark()
                    report.stages += r.stages
                    if any(getattr(st, "start_error", None) for st in r.stages):
                        break
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
        peak_mb = rss.peak_mb  # now: the engine timings below hold frames in memory
        load_after = _load()
        failed = [f"{s.stage}:{r.shard:05d}: {r.error.splitlines()[0]}" for s in report.stages for r in s.failed_shards if r.error]
        media = float(p.duration_s or 0.0) * len(inputs)
        stages: dict[str, Any] = {}
        for st in report.stages:
            items, unit = stage_items(out, st.stage)
            stages[st.stage] = {
                "seconds": round(st.seconds, 2),
                "items": round(items, 2),
                "unit": unit,
                "items_per_s": round(items / st.seconds, 2) if st.seconds > 0 else None,
                "realtime": round(media / st.seconds, 2) if st.seconds > 0 else None,
            }
            if st.stage in stage_cpu:
                stages[st.stage]["cpu_seconds"] = round(stage_cpu[st.stage], 2)
                stages[st.stage]["cores_used"] = round(stage_cpu[st.stage] / st.seconds, 2) if st.seconds > 0 else None
                stages[st.stage]["peak_rss_mb"] = stage_rss[st.stage]
        bottleneck = max(stages, key=lambda s: stages[s]["seconds"]) if stages else None
        want = list(stages) if "all" in limits else [bottleneck if s == "bottleneck" else s for s in limits if s != "none"]
        engine: dict[str, Any] = {}
        for s in dict.fromkeys(w for w in want if w):
            try:
                if s == "faces":
                    engine[s] = faces_limit(src, cfg, landmarker_frames)
                elif s == "speech":
                    engine[s] = speech_limit(out, cfg)
                elif s == "ingest":
                    engine[s] = decode_limit(src)
                elif s == "fit":
                    engine[s] = fit_limit(out)
            except Exception as e:  # noqa: BLE001 - a limit that cannot be measured is reported, the figures stand
                log.warning("raw %s engine could not be timed: %s: %s", s, type(e).__name__, e)
                engine[s] = {"error": f"{type(e).__name__}: {e}"}
        lim = (engine.get(bottleneck) or {}).get("realtime")
        rtf = media / wall if wall > 0 else None
        return {
            "video": str(video),
            "repeat": repeat,
            "videos": len(inputs),
            "media_seconds": round(media, 2),
            "width": p.width,
            "height": p.height,
            "fps": round(p.fps, 3) if p.fps else None,
            "wall_seconds": round(wall, 2),
            "realtime_factor": round(rtf, 3) if rtf else None,
            # CPU of this process and its (joined) workers: steadier than wall time on a shared box;
            # media / (cpu / cores) is what the run would reach with every core busy and no waiting
            "cpu_seconds": round(cpu, 2),
            "cpu_realtime_bound": round(media / (cpu / cores()), 3) if cpu > 0 else None,
            "peak_rss_mb": peak_mb,
            "peak_pss_mb": rss.peak_pss_mb,
            "stages": stages,
            "bottleneck": bottleneck,
            "bottleneck_limit_realtime": lim,
            "fraction_of_limit": round(rtf / lim, 3) if rtf and lim else None,
            "engine_limits": engine,
            "workers": cfg.runner.workers,
            "failed_shards": failed,
            "machine": machine(),
            "cores": cores(),
            "load_average": load_after,
            "load_average_before": load_before,
        }
    finally:
        tmp.cleanup()
