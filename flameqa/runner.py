"""Pipeline runner and the local executor.

The unit of work is a shard: shard ``k`` of a stage's input table (for ingest: chunk ``k`` of the
manifest) maps to shard ``k`` of each of its output tables. For each shard the executor reads the
input rows and the side tables' shard ``k``, feeds the stage whole clips at a time, writes every
output shard (temp + rename), then the markers (last). A shard whose markers carry the same config
hash is skipped on rerun; ``overwrite`` redoes it. A stage that raises on a batch is retried one
clip at a time; a clip that still fails becomes failed rows (``Stage.on_error``), never a lost clip.
Before any stage works, :func:`preflight` asks every stage whether it can start (a missing FLAME
file, landmarker bundle or Whisper model: :meth:`Stage.check`) and stops the run with that one line.
A stage that still cannot start at its turn (a corrupt model file, an out-of-memory load) fails
its shards with that error and the stages after it are not run; a worker process that dies fails
only its shards.
The local executor starts each stage as soon as the stages whose tables it reads are done
(``runner.concurrent_stages``): speech runs beside faces, speakers beside fit.
Crash tests kill runs at exact places through ``$FLAMEQA_TEST_KILL_AT`` (see ``shards.fault_point``).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from flameqa import __version__
from flameqa.config import PipelineConfig, config_hash, save_config
from flameqa.io import shards as sh
from flameqa.io.schema import conform
from flameqa.stages import ORDER, STAGES, stage_class
from flameqa.stages.base import Stage, StageContext, exit_with_parent

log = logging.getLogger(__name__)


@dataclass
class ShardResult:
    stage: str
    shard: int
    skipped: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    status_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class StageReport:
    stage: str
    shards: list[ShardResult] = field(default_factory=list)
    seconds: float = 0.0
    start_error: str | None = None
    """Why the stage could not start (its shards carry the same error); later stages are not run."""

    @property
    def failed_shards(self) -> list[ShardResult]:
        return [s for s in self.shards if s.error]


@dataclass
class RunReport:
    out: Path
    stages: list[StageReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(not s.failed_shards for s in self.stages)


# ---------------------------------------------------------------------------------------------
# shard planning


def input_shards(out: Path, stage_name: str, manifest_rows: Sequence[dict] | None, cfg: PipelineConfig) -> list[int]:
    cls = stage_class(stage_name)
    if cls.input_table is None:
        n = len(manifest_rows or [])
        per = max(1, cfg.ingest.videos_per_shard)
        return list(range((n + per - 1) // per))
    return sh.completed_shards(out, cls.input_table)


def stage_hash(cfg: PipelineConfig, stage_name: str, out: Path, idx: int, manifest_chunk: list[dict] | None) -> str:
    """Config hash of one shard: the stage's config, the package version and the upstream hashes."""
    cls = stage_class(stage_name)
    parts = [__version__]
    if cls.input_table is None:
        parts.append(repr(manifest_chunk))
    else:
        for t in (cls.input_table, *cls.side_tables, *cls.optional_side_tables):
            m = sh.read_marker(out, t, idx)
            parts.append(f"{t}:{m.get('config_hash') if m else None}")
    return config_hash(cfg.stage_config(stage_name), *parts)


def shard_is_done(out: Path, cls: type[Stage], idx: int, h: str) -> bool:
    for t in cls.output_tables:
        m = sh.read_marker(out, t, idx)
        if m is None or m.get("config_hash") != h or not sh.shard_path(out, t, idx).exists():
            return False
    return True


def plan_stage(
    stage_name: str, cfg: PipelineConfig, out: Path, manifest_rows: Sequence[dict] | None
) -> tuple[list[ShardResult], list[tuple[int, str, list[dict] | None]]]:
    """Shards already done (skipped results) and shards to do ``(index, config hash, manifest chunk)``.

    Every executor plans with this: same shard indices, same hashes, same skip rule, so a run on one
    executor resumes a run on another.
    """
    cls = stage_class(stage_name)
    per = max(1, cfg.ingest.videos_per_shard)
    chunks: dict[int, list[dict]] = {}
    if cls.input_table is None and manifest_rows is not None:
        chunks = {i: list(manifest_rows[i * per : (i + 1) * per]) for i in range((len(manifest_rows) + per - 1) // per)}
    skipped, todo = [], []
    for idx in input_shards(out, stage_name, manifest_rows, cfg):
        h = stage_hash(cfg, stage_name, out, idx, chunks.get(idx))
        if not cfg.runner.overwrite and shard_is_done(out, cls, idx, h):
            skipped.append(ShardResult(stage=stage_name, shard=idx, skipped=True))
        else:
            todo.append((idx, h, chunks.get(idx)))
    return skipped, todo


# ---------------------------------------------------------------------------------------------
# processing one shard (runs in the parent or in a worker process)


Rows = "pa.Table | sh.ShardReader"


def _group_indices(rows, key: str) -> list[list[int]]:
    """Row indices of each group sharing ``key`` (first-appearance order); no key → one row a group."""
    if key not in rows.column_names or rows.num_rows == 0:
        return [[i] for i in range(rows.num_rows)]
    keys = rows.keys(key) if isinstance(rows, sh.ShardReader) else rows.column(key).to_pylist()
    order: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        order.setdefault(k, []).append(i)
    return list(order.values())


def _take(rows, ix: list[int]) -> pa.Table:
    return rows.take(ix) if isinstance(rows, sh.ShardReader) else rows.take(pa.array(ix, pa.int64()))


def _groups(batch: pa.Table, key: str) -> list[pa.Table]:
    """Split rows into groups sharing ``key`` (first-appearance order); no key → one row a group."""
    return [_take(batch, ix) for ix in _group_indices(batch, key)]


def _filter_side(side: dict[str, Any], key: str, values: list) -> dict[str, pa.Table]:
    """Side tables restricted to the rows of ``values`` (whole tables when they lack ``key``)."""
    res = {}
    for name, t in side.items():
        if isinstance(t, sh.ShardReader):
            res[name] = t.select(key, values) if key in t.column_names else t.read_all()
        elif key in t.column_names and t.num_rows:
            res[name] = t.filter(pc.is_in(t.column(key), value_set=pa.array(values, type=t.schema.field(key).type)))
        else:
            res[name] = t
    return res


def _status_counts(t: pa.Table) -> dict[str, int]:
    if "status" not in t.column_names:
        return {"ok": t.num_rows}
    counts: dict[str, int] = {}
    for s in t.column("status").to_pylist():
        counts[s] = counts.get(s, 0) + 1
    return counts


def run_stage_on_rows(
    stage: Stage, rows, side: dict[str, Any], batch_groups: int, emit: Callable[[str, pa.Table], None] | None = None
) -> dict[str, list[pa.Table]]:
    """Feed ``rows`` to ``stage`` a few groups at a time; isolate failures to single groups.

    ``rows`` and the side tables are Arrow tables or :class:`~flameqa.io.shards.ShardReader` (read
    one batch at a time). Each batch's output goes to ``emit(table, rows)`` as soon as it exists; without
    ``emit`` the outputs are collected and returned.
    """
    outputs: dict[str, list[pa.Table]] = {t: [] for t in stage.output_tables}
    emit = emit or (lambda t, v: outputs[t].append(v))
    groups = _group_indices(rows, stage.group_key)
    key = stage.group_key
    step = max(1, batch_groups)
    for start in range(0, len(groups), step):
        ixs = groups[start : start + step]
        batch = _take(rows, [i for ix in ixs for i in ix])
        try:
            res = stage(batch, _filter_side(side, key, batch.column(key).to_pylist()) if key in batch.column_names else side)
        except Exception:  # noqa: BLE001 - isolate the failing group below
            log.warning("%s: a batch of %d groups raised; retrying one group at a time", stage.name, len(ixs))
            res = {t: [] for t in stage.output_tables}
            for ix in ixs:
                g = _take(rows, ix)
                try:
                    r = stage(g, _filter_side(side, key, g.column(key).to_pylist()) if key in g.column_names else side)
                except Exception as e:  # noqa: BLE001 - becomes a failed row
                    err = f"{type(e).__name__}: {e}"
                    log.error("%s: group failed: %s\n%s", stage.name, err, traceback.format_exc(limit=4))
                    r = stage.on_error(g, err)
                    if r is None:
                        raise
                for t, v in r.items():
                    res[t].append(v)
            res = {t: pa.concat_tables([conform(t, x) for x in v]) if v else None for t, v in res.items()}
        for t, v in res.items():
            if v is not None:
                emit(t, conform(t, v))
    return outputs


def process_shard(stage: Stage, cfg: PipelineConfig, out: Path, idx: int, h: str, rows, side: dict[str, Any]) -> ShardResult:
    """Run ``stage`` over one shard: outputs stream to hidden temp files batch by batch, are renamed
    into place once every batch is done, then the markers are written. ``rows``/``side``: Arrow
    tables or shard readers (:func:`load_inputs`); memory holds one batch, not the shard."""
    t0 = time.perf_counter()
    # clear markers of every output first: a crash from here on leaves the shard visibly incomplete
    for t in stage.output_tables:
        sh.marker_path(out, t, idx).unlink(missing_ok=True)
        sh.remove_stale_temps(out, t, idx)  # what a killed attempt at this shard left behind
    sh.fault_point("start", stage.name, idx)
    res = ShardResult(stage=stage.name, shard=idx)
    writers = {t: sh.ShardWriter(out, t, idx) for t in stage.output_tables}
    counts: dict[str, dict[str, int]] = {t: {} for t in stage.output_tables}

    def emit(t: str, tbl: pa.Table) -> None:
        writers[t].write(tbl)
        for k, n in _status_counts(tbl).items():
            counts[t][k] = counts[t].get(k, 0) + n

    try:
        run_stage_on_rows(stage, rows, side, cfg.runner.batch_groups, emit=emit)
        for t, w in writers.items():
            w.commit()
            res.rows[t] = w.rows
            res.status_counts[t] = counts[t] if w.rows else _status_counts(conform(t, []))
            sh.fault_point("write", stage.name, idx)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    res.seconds = time.perf_counter() - t0
    sh.fault_point("marker", stage.name, idx)
    for k, t in enumerate(stage.output_tables):  # markers last
        if k == 1:
            sh.fault_point("marker1", stage.name, idx)
        sh.write_marker(
            out,
            t,
            idx,
            {
                "stage": stage.name,
                "table": t,
                "shard": idx,
                "rows": res.rows[t],
                "status_counts": res.status_counts[t],
                "config_hash": h,
                "version": __version__,
                "seconds": round(res.seconds, 3),
                "input_rows": rows.num_rows,
                "extra": getattr(stage, "marker_extra", lambda: {})(),
            },
        )
    sh.fault_point("done", stage.name, idx)
    return res


def load_inputs(out: Path, stage_name: str, idx: int, manifest_chunk: list[dict] | None, lazy: bool = False) -> tuple[Any, dict[str, Any]]:
    """Input rows and side tables of shard ``idx``: Arrow tables, or with ``lazy`` shard readers that
    :func:`process_shard` reads one batch at a time (memory does not grow with the shard)."""
    cls = stage_class(stage_name)
    read = sh.ShardReader if lazy else sh.read_shard
    if cls.input_table is None:
        from flameqa.ingest.manifest import manifest_table

        rows = manifest_table(manifest_chunk or [])
    else:
        rows = read(out, cls.input_table, idx)
    side = {}
    for t in cls.side_tables:
        if sh.read_marker(out, t, idx) is None or not sh.shard_path(out, t, idx).exists():
            raise RuntimeError(f"needs shard {idx:05d} of table {t!r}, which is not complete (its stage failed or has not run): rerun to retry")
        side[t] = read(out, t, idx)
    for t in cls.optional_side_tables:
        side[t] = read(out, t, idx) if idx in sh.completed_shards(out, t) else conform(t, [])
    return rows, side


# worker-process state: one stage object per process, built once
_WORKER: dict[str, Any] = {}


def _worker_init(stage_name: str, stage_spec: str, cfg: PipelineConfig, ctx: StageContext, parent: int) -> None:
    import importlib

    from flameqa.logs import setup_logging

    exit_with_parent(parent)
    setup_logging(os.environ.get("FLAMEQA_LOG", "WARNING"))
    _WORKER["cfg"] = cfg
    # the parent's registry entry (``module:Class``): a stage registered at run time works in workers too
    mod, name = stage_spec.split(":")
    try:
        _WORKER["stage"] = getattr(importlib.import_module(mod), name)(cfg.stage_config(stage_name), ctx)
    except Exception as e:  # noqa: BLE001 - reported per shard by _worker_run (a raising initializer breaks the pool)
        _WORKER["init_error"] = f"stage {stage_name!r} could not start: {type(e).__name__}: {e}"


def _worker_run(stage_name: str, out: str, idx: int, h: str, manifest_chunk: list[dict] | None) -> ShardResult:
    if "init_error" in _WORKER:
        return ShardResult(stage=stage_name, shard=idx, error=_WORKER["init_error"])
    stage, cfg = _WORKER["stage"], _WORKER["cfg"]
    try:
        rows, side = load_inputs(Path(out), stage_name, idx, manifest_chunk, lazy=True)
        return process_shard(stage, cfg, Path(out), idx, h, rows, side)
    except Exception as e:  # noqa: BLE001 - reported, the run goes on
        return ShardResult(stage=stage_name, shard=idx, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")


# ---------------------------------------------------------------------------------------------
# the local executor


def run_stage_local(
    stage_name: str,
    cfg: PipelineConfig,
    out: Path,
    manifest_rows: Sequence[dict] | None = None,
    ctx: StageContext | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> StageReport:
    cls = stage_class(stage_name)
    ctx = ctx or StageContext(out=out)
    report = StageReport(stage=stage_name)
    t0 = time.perf_counter()
    skipped, todo = plan_stage(stage_name, cfg, out, manifest_rows)
    report.shards.extend(skipped)
    if cls.input_table is not None and not todo and not report.shards:
        log.warning("%s: no completed shards of its input table %r under %s: nothing to do", stage_name, cls.input_table, out)
    done = 0
    total = len(todo)
    if progress:
        progress(stage_name, 0, total)
    if not todo:
        report.seconds = time.perf_counter() - t0
        return report
    workers = max(1, min(cfg.runner.stage_workers.get(stage_name, cfg.runner.workers), total))
    if workers == 1:
        inner = cfg.runner.inner_processes or available_cpus()
        ctx = replace(ctx, extra={**ctx.extra, "processes": max(1, inner)})
        try:
            stage = cls(cfg.stage_config(stage_name), ctx)
        except Exception as e:  # noqa: BLE001 - a config/model problem: reported, nothing written
            return _start_failed(report, todo, e, t0)
        try:
            for idx, h, chunk in todo:
                try:
                    rows, side = load_inputs(out, stage_name, idx, chunk, lazy=True)
                    r = process_shard(stage, cfg, out, idx, h, rows, side)
                except Exception as e:  # noqa: BLE001 - reported, the run goes on
                    r = ShardResult(stage=stage_name, shard=idx, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
                report.shards.append(r)
                done += 1
                if progress:
                    progress(stage_name, done, total)
        finally:
            stage.close()
    else:
        import multiprocessing as mp

        # spawn: torch/mediapipe/onnx thread pools do not survive fork
        from concurrent.futures.process import BrokenProcessPool

        def pool_run(items: list, n: int) -> list[tuple[tuple, ShardResult | None]]:
            """Run ``items`` on a pool of ``n`` spawned workers; ``None`` where the pool broke."""
            res = []
            # the config object itself is pickled to the workers: a JSON dump turns secrets into asterisks
            with ProcessPoolExecutor(
                max_workers=n, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(stage_name, STAGES[stage_name], cfg, ctx, os.getpid())
            ) as pool:
                futs = {pool.submit(_worker_run, stage_name, str(out), it[0], it[1], it[2]): it for it in items}
                for f in as_completed(futs):
                    try:
                        res.append((futs[f], f.result()))
                    except BrokenProcessPool:
                        res.append((futs[f], None))
            return res

        def finish(r: ShardResult) -> None:
            nonlocal done
            report.shards.append(r)
            done += 1
            if progress:
                progress(stage_name, done, total)

        broken = []
        for it, r in pool_run(todo, workers):
            if r is None:
                broken.append(it)
            else:
                finish(r)
        # a dead worker (killed, out of memory, a crash in native code) breaks the whole pool and fails
        # every shard in flight: retry those once, each in a pool of its own, so only the culprit fails
        if broken:
            log.warning("%s: a worker process died; retrying %d shard(s) one at a time", stage_name, len(broken))
        for it in broken:
            (_, r), = pool_run([it], 1)
            finish(r or ShardResult(stage=stage_name, shard=it[0], error="its worker process died twice (killed, out of memory or crashed); no marker written, rerun to retry"))
    start = [r.error for r in report.shards if r.error and r.error.startswith(f"stage {stage_name!r} could not start")]
    if start:
        report.start_error = start[0]
    for r in report.shards:
        if r.error:
            log.error("%s shard %05d failed (no marker written, rerun to retry): %s", stage_name, r.shard, r.error.splitlines()[0])
    report.shards.sort(key=lambda r: r.shard)
    report.seconds = time.perf_counter() - t0
    return report


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _start_failed(report: StageReport, todo: list, e: Exception, t0: float) -> StageReport:
    err = f"stage {report.stage!r} could not start: {type(e).__name__}: {e}"
    log.error("%s (fix its config or model files; nothing was written)", err)
    log.debug("stage start failure", exc_info=True)
    report.start_error = err
    report.shards += [ShardResult(stage=report.stage, shard=t[0], error=err) for t in todo]
    report.seconds = time.perf_counter() - t0
    return report


class PreflightError(RuntimeError):
    """A stage of the run could not start: raised before any stage has worked."""


def preflight(cfg: PipelineConfig, names: Sequence[str], out: Path | None = None) -> None:
    """Check that every stage of ``names`` can start (:meth:`Stage.check`), before any of them runs:
    a missing FLAME file or Whisper model used to surface only when its stage's turn came, after
    the stages before it had run for as long as they take.

    Only where the answer holds for the stages' processes: with the Ray executor the workers may
    be other machines, with other paths and caches, so nothing is checked on the driver (each
    worker reports its own start failure, as before). A stage that already has completed shards in
    ``out`` (a resumed or repeated run, an OUT copied from another machine) only warns: it may have
    nothing left to do, and then it never starts.
    """
    if cfg.runner.executor == "ray":
        return
    for name in names:
        cls = stage_class(name)
        try:
            cls.check(cfg.stage_config(name))
        except Exception as e:  # noqa: BLE001 - any reason a stage cannot start ends the run here
            log.debug("preflight failure", exc_info=True)
            msg = f"stage {name!r} cannot start: {e}"
            if out is not None and any(sh.completed_shards(out, t) for t in cls.output_tables):
                log.warning("%s (its shards still to do will fail; completed ones are kept)", msg)
                continue
            raise PreflightError(msg) from None
    if "fit" in names and cfg.fit.model == "demo" and cfg.name != "demo":
        log.warning("fit.model is 'demo': the %s pipeline fits the generated demo head, not FLAME (set fit.model to your FLAME file)", cfg.name)


def run_pipeline(
    cfg: PipelineConfig,
    out: str | os.PathLike,
    inputs: Sequence[str] | str | None = None,
    stages: Iterable[str] | None = None,
    show_progress: bool = True,
    ctx: StageContext | None = None,
) -> RunReport:
    """Run ``stages`` (default: the config's) over ``out``; ``inputs`` (manifest/folder/glob) feed ingest."""
    out = Path(out)
    names = [s for s in ORDER if s in (list(stages) if stages is not None else cfg.stages)]
    manifest_rows = None
    # everything that can fail before any work does so before OUT is touched
    if "ingest" in names:
        if inputs is None:
            raise ValueError("the ingest stage needs --input (a manifest file, a folder or a glob)")
        from flameqa.ingest.manifest import read_manifest

        manifest_rows = read_manifest(inputs)
    preflight(cfg, names, out)
    out.mkdir(parents=True, exist_ok=True)
    sh.check_free_space(out)
    save_config(cfg, out)
    if cfg.runner.executor == "ray":
        from flameqa.executors.ray import run_stage_ray as run_one
    else:
        run_one = run_stage_local
    report = RunReport(out=out)
    with _Progress(show_progress) as prog:

        def run(name: str) -> StageReport:
            log.info("stage %s", name)
            return run_one(name, cfg, out, manifest_rows if name == "ingest" else None, ctx=ctx, progress=prog.update)

        if cfg.runner.executor == "local" and cfg.runner.concurrent_stages and len(names) > 1:
            report.stages = _run_concurrently(names, run)
        else:
            for name in names:
                st = run(name)
                report.stages.append(st)
                if getattr(st, "start_error", None):
                    later = names[names.index(name) + 1 :]
                    if later:
                        log.error("not running %s: stage %s could not start", later, name)
                    break
    return report


def stage_dependencies(names: Sequence[str]) -> dict[str, set[str]]:
    """For each stage of ``names`` (in pipeline order), the stages of ``names`` whose output tables it
    reads (input, side and optional side tables). Tables of stages not in ``names`` are already on disk."""
    producer: dict[str, str] = {}
    deps: dict[str, set[str]] = {}
    for n in names:
        cls = stage_class(n)
        reads = {t for t in (cls.input_table, *cls.side_tables, *cls.optional_side_tables) if t}
        deps[n] = {producer[t] for t in reads if t in producer}
        for t in cls.output_tables:
            producer[t] = n
    return deps


def _run_concurrently(names: Sequence[str], run: Callable[[str], StageReport]) -> list[StageReport]:
    """Run each stage as soon as the stages it reads from are done (speech beside faces, speakers
    beside fit), one thread per running stage; reports come back in pipeline order.

    Stages are CPU-bound in C (MediaPipe, CTranslate2, torch) that leave the GIL, or run in their
    own worker processes, so they share the machine's cores instead of idling half of them while
    one single-process stage runs. A stage that cannot start stops the scheduling: stages already
    running finish, none starts after it (as in the sequential order). The threads are daemons: an
    interrupted run (Ctrl-C) exits without waiting for them.
    """
    import queue
    import threading

    deps = stage_dependencies(names)
    done_q: queue.Queue = queue.Queue()
    reports: dict[str, StageReport] = {}
    running: set[str] = set()
    stopped = False

    def target(name: str) -> None:
        try:
            done_q.put((name, run(name), None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the scheduling thread
            done_q.put((name, None, e))

    while True:
        if not stopped:
            for n in names:
                if n not in reports and n not in running and deps[n] <= reports.keys():
                    running.add(n)
                    threading.Thread(target=target, args=(n,), name=f"stage-{n}", daemon=True).start()
        if not running:
            break
        name, rep, err = done_q.get()
        running.discard(name)
        if err is not None:
            raise err
        reports[name] = rep
        if getattr(rep, "start_error", None) and not stopped:
            stopped = True
            later = [n for n in names if n not in reports and n not in running]
            if later:
                log.error("not running %s: stage %s could not start", later, name)
    return [reports[n] for n in names if n in reports]


class _Progress:
    """Rich progress bars per stage (no-op when disabled or not a terminal-friendly run)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.p = Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"), TimeElapsedColumn())
            self.p.__enter__()
        return self

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.p.add_task(stage, total=total)
        self.p.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.p.__exit__(*exc)
