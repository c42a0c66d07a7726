"""The Ray executor: the local executor's shards and markers, with the work spread over a Ray cluster.

A stage becomes one Ray Data ``map_batches`` over a small table with one row per shard to do (its
index, config hash and, for ingest, the manifest chunk as JSON). A fixed-size pool of actors runs
it: each actor builds the stage once (models load once per actor) and handles one shard per call
through the runner's own ``load_inputs`` + ``process_shard``, the functions the local executor
calls. So a shard is planned, hashed, grouped, retried group by group (``Stage.on_error``) and
marked exactly as in a local run, and either executor resumes the other's output.

Why shards and not the table's rows: a stage needs whole clips plus the same shard of its side
tables, and a marker may only be written once every output table of a shard exists. Streaming
rows through Ray would mean regrouping them and writing shards from a second code path; with one
row per shard, the per-frame arrays never cross Ray at all — actors read and write the Parquet
shards where they live (``OUT`` must be a path every node sees: see docs/ray.md). What does cross
Ray is Arrow with explicit types; ``read_dataset`` hands finished tables to Ray Data with their
``list<fixed_size_list<float32,N>>`` columns intact.

Faults: a Python exception inside a stage is handled as locally (the group becomes failed rows,
or the shard fails without a marker). An actor that dies (killed, OOM, segfault) is restarted by
Ray and its shard retried ``ray.max_task_retries`` times; a shard that keeps killing its actor is
reported as failed and the other shards go on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pyarrow as pa

from flameqa import __version__
from flameqa.config import PipelineConfig, RayConfig
from flameqa.runner import ShardResult, StageReport, load_inputs, plan_stage, process_shard
from flameqa.stages import STAGES, stage_class
from flameqa.stages.base import Stage, StageContext

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

TASK_SCHEMA = pa.schema([("shard", pa.int64()), ("config_hash", pa.string()), ("manifest_chunk", pa.string())])
"""One row per shard to do: what the driver sends to the actors."""

RESULT_SCHEMA = pa.schema(
    [
        ("shard", pa.int64()),
        ("rows", pa.string()),
        ("status_counts", pa.string()),
        ("seconds", pa.float64()),
        ("error", pa.string()),
        ("node", pa.string()),
    ]
)
"""One row per finished shard: what the actors send back (``rows``/``status_counts`` as JSON)."""


# ---------------------------------------------------------------------------------------------
# starting / joining Ray


def ray_env(rc: RayConfig) -> None:
    """Set the environment Ray reads at import and start (auth mode, usage stats)."""
    if rc.auth_mode is not None:
        os.environ["RAY_AUTH_MODE"] = rc.auth_mode
    os.environ["RAY_USAGE_STATS_ENABLED"] = "1" if rc.usage_stats else "0"


class RayUnreachable(ConnectionError):
    """The configured Ray cluster cannot be joined."""


def init_ray(rc: RayConfig) -> bool:
    """Start (or join) Ray as ``rc`` says, unless this process is already connected.

    Returns True when this call connected. ``rc.address`` (or ``$RAY_ADDRESS``) joins a cluster;
    otherwise Ray starts in-process with ``num_cpus``, ``object_store_memory``, ``temp_dir``.
    """
    ray_env(rc)
    import ray

    if ray.is_initialized():
        return False
    address = rc.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log.info("joining the Ray cluster at %s", address)
        try:
            ray.init(address=address, log_to_driver=rc.log_to_driver)
        except ConnectionError as e:
            # Ray's own message names the flag and env var; say which address was tried
            raise RayUnreachable(f"no Ray cluster at {address!r}: {e}") from None
    else:
        kw: dict[str, Any] = dict(
            num_cpus=rc.num_cpus,
            num_gpus=rc.num_gpus,
            include_dashboard=rc.include_dashboard,
            object_store_memory=rc.object_store_memory,
            log_to_driver=rc.log_to_driver,
        )
        if rc.temp_dir:
            Path(rc.temp_dir).mkdir(parents=True, exist_ok=True)
            kw["_temp_dir"] = str(Path(rc.temp_dir).resolve())
        log.info("starting Ray in-process (num_cpus=%s, object store %d MiB)", rc.num_cpus, rc.object_store_memory >> 20)
        ray.init(**kw)
    return True


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


# ---------------------------------------------------------------------------------------------
# resources


@dataclasses.dataclass(frozen=True)
class ActorPlan:
    """Resources of one stage's actor pool."""

    size: int
    num_cpus: float
    num_gpus: float


def plan_actors(cls: type[Stage], rc: RayConfig, n_shards: int, resources: dict[str, float]) -> ActorPlan:
    """Pool size and per-actor CPUs/GPUs from what the cluster has (``ray.cluster_resources()``).

    A stage with ``uses_gpu`` gets GPU actors only when the cluster reports GPUs: asking Ray for a
    GPU it does not have leaves the actors pending forever, so on a GPU-less cluster it runs on CPU.
    """
    if rc.cpus_per_actor < 0 or rc.gpus_per_actor <= 0:
        raise ValueError(f"ray.cpus_per_actor must be ≥ 0 and ray.gpus_per_actor > 0 (got {rc.cpus_per_actor}, {rc.gpus_per_actor})")
    if rc.max_actors is not None and rc.max_actors < 1:
        raise ValueError(f"ray.max_actors must be ≥ 1 or null (got {rc.max_actors})")
    cpus = float(resources.get("CPU", 0))
    gpus = float(resources.get("GPU", 0))
    if cls.uses_gpu and gpus > 0:
        per_gpu = min(rc.gpus_per_actor, gpus)
        fit = int(gpus // per_gpu + 1e-9)
        num_cpus = min(rc.cpus_per_actor, cpus) if cpus else 0.0
        num_gpus = per_gpu
    else:
        if cls.uses_gpu:
            log.info("%s: the Ray cluster has no GPU; its actors run on CPU", cls.name)
        num_cpus = min(rc.cpus_per_actor, cpus) if cpus else 0.0
        fit = int(cpus // num_cpus + 1e-9) if num_cpus > 0 else max(1, int(cpus))
        num_gpus = 0.0
    size = max(1, min(n_shards, fit, rc.max_actors or n_shards))
    return ActorPlan(size=size, num_cpus=num_cpus, num_gpus=num_gpus)


# ---------------------------------------------------------------------------------------------
# the actor


class ShardWorker:
    """Ray Data callable class: one stage object per actor, one shard per call.

    Built from the stage's name and registry entry, the pipeline config as JSON and the run's
    ``StageContext`` (all picklable), so a worker process needs nothing from the driver's memory.
    """

    def __init__(
        self,
        stage_name: str,
        stage_spec: str,
        cfg_json: dict[str, Any],
        out: str,
        ctx: StageContext,
        log_level: str,
        driver_version: str,
    ) -> None:
        import socket

        from pydantic import ValidationError

        from flameqa import __version__, stages
        from flameqa.logs import setup_logging

        setup_logging(log_level)
        # the driver's registry entry: stages registered at run time (plugins, tests) resolve here too
        stages.STAGES[stage_name] = stage_spec
        self.stage_name = stage_name
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        try:
            self.cfg = PipelineConfig.model_validate(cfg_json)
        except ValidationError as e:
            # the driver's config does not fit this worker's flameqa: different code on the nodes
            raise RuntimeError(
                f"{stage_name} actor on {self.node}: the driver's pipeline config does not validate here "
                f"(driver flameqa {driver_version}, this worker {__version__}); install the same flameqa "
                f"on every node.\n{e}"
            ) from None
        self.out = Path(out)
        self.stage = stage_class(stage_name)(self.cfg.stage_config(stage_name), ctx)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out: list[dict[str, Any]] = []
        for task in batch.to_pylist():
            idx, h = int(task["shard"]), task["config_hash"]
            chunk = json.loads(task["manifest_chunk"]) if task["manifest_chunk"] is not None else None
            try:
                rows, side = load_inputs(self.out, self.stage_name, idx, chunk)
                r = process_shard(self.stage, self.cfg, self.out, idx, h, rows, side)
            except Exception as e:  # noqa: BLE001 - reported to the driver, the run goes on
                r = ShardResult(stage=self.stage_name, shard=idx, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
            out.append(
                dict(
                    shard=idx,
                    rows=json.dumps(r.rows),
                    status_counts=json.dumps(r.status_counts),
                    seconds=r.seconds,
                    error=r.error,
                    node=self.node,
                )
            )
        return pa.Table.from_pylist(out, schema=RESULT_SCHEMA)

    def __del__(self) -> None:  # Ray Data deletes the UDF when the pool shuts down
        stage = getattr(self, "stage", None)
        if stage is not None:
            try:
                stage.close()
            except Exception:  # noqa: BLE001 - teardown of a finished actor
                log.debug("%s: close() raised", self.stage_name, exc_info=True)


# ---------------------------------------------------------------------------------------------
# the executor


def run_stage_ray(
    stage_name: str,
    cfg: PipelineConfig,
    out: Path,
    manifest_rows: Sequence[dict] | None = None,
    ctx: StageContext | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> StageReport:
    """Run one stage on Ray; the signature, outputs and report are those of ``run_stage_local``."""
    out = Path(out)
    cls = stage_class(stage_name)
    ctx = ctx or StageContext(out=out)
    rc = cfg.ray
    report = StageReport(stage=stage_name)
    t0 = time.perf_counter()
    skipped, todo = plan_stage(stage_name, cfg, out, manifest_rows)
    report.shards.extend(skipped)
    if cls.input_table is not None and not todo and not skipped:
        log.warning("%s: no completed shards of its input table %r under %s: nothing to do", stage_name, cls.input_table, out)
    if progress:
        progress(stage_name, 0, len(todo))
    if not todo:  # a finished stage does not even start Ray
        report.seconds = time.perf_counter() - t0
        return report

    init_ray(rc)
    import ray

    if not out.is_absolute() and len(ray.nodes()) > 1:
        log.warning("%s: output path %s is relative: actors on other nodes resolve it against their own working folder", stage_name, out)

    plan = plan_actors(cls, rc, len(todo), ray.cluster_resources())
    if plan.num_gpus and ctx.device == "cpu":
        ctx = dataclasses.replace(ctx, device="cuda")  # Ray sets CUDA_VISIBLE_DEVICES per actor
    log.info("%s: %d shards on %d actors (%.2g CPU, %.2g GPU each)", stage_name, len(todo), plan.size, plan.num_cpus, plan.num_gpus)

    # one block per shard, so the pool hands shards out one at a time
    tasks = [
        pa.Table.from_pylist(
            [{"shard": idx, "config_hash": h, "manifest_chunk": None if chunk is None else json.dumps(chunk)}], schema=TASK_SCHEMA
        )
        for idx, h, chunk in todo
    ]
    remote_args: dict[str, Any] = {"max_restarts": -1, "max_task_retries": rc.max_task_retries, **rc.ray_remote_args}
    dctx = ray.data.DataContext.get_current()
    saved = (dctx.enable_progress_bars, dctx.max_errored_blocks)
    dctx.enable_progress_bars = rc.progress_bars
    dctx.max_errored_blocks = -1  # a shard that keeps killing its actor must not stop the others
    results: dict[int, dict[str, Any]] = {}
    try:
        with warnings.catch_warnings():
            # Ray 2.60 has no named map_batches parameter for actor restarts/retries yet
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            ds = ray.data.from_arrow(tasks).map_batches(
                ShardWorker,
                batch_size=1,
                batch_format="pyarrow",
                zero_copy_batch=True,
                compute=ray.data.ActorPoolStrategy(size=plan.size, max_tasks_in_flight_per_actor=1),
                fn_constructor_kwargs=dict(
                    stage_name=stage_name,
                    stage_spec=STAGES[stage_name],
                    cfg_json=cfg.model_dump(mode="python"),  # "json" would turn secrets (API keys) into asterisks
                    out=str(out),
                    ctx=ctx,
                    log_level=os.environ.get("FLAMEQA_LOG", "WARNING"),
                    driver_version=__version__,
                ),
                num_cpus=plan.num_cpus,
                num_gpus=plan.num_gpus or None,
                **remote_args,
            )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for r in batch.to_pylist():
                results[r["shard"]] = r
                log.debug("%s shard %05d done on %s in %.1f s", stage_name, r["shard"], r["node"], r["seconds"] or 0.0)
                if progress:
                    progress(stage_name, len(results), len(todo))
    except ray.exceptions.RayError as e:
        # e.g. every actor failed in __init__ (a model missing on a node): Ray's message ends with the cause
        cause = [ln for ln in str(e).strip().splitlines() if ln.strip()][-1:] or [type(e).__name__]
        raise RuntimeError(
            f"{stage_name}: the Ray run stopped: {cause[0].strip()} "
            f"({len(results)} of {len(todo)} shards finished and kept; fix the cause and rerun to resume)"
        ) from e
    finally:
        dctx.enable_progress_bars, dctx.max_errored_blocks = saved

    for idx, _, _ in todo:
        r = results.get(idx)
        if r is None:
            report.shards.append(
                ShardResult(
                    stage=stage_name,
                    shard=idx,
                    error=f"its Ray actor died on each of {rc.max_task_retries + 1} attempts (killed, out of memory or crashed); "
                    "the actors' logs are under the Ray session's logs/ folder",
                )
            )
            continue
        report.shards.append(
            ShardResult(
                stage=stage_name,
                shard=idx,
                rows=json.loads(r["rows"]),
                status_counts=json.loads(r["status_counts"]),
                seconds=r["seconds"],
                error=r["error"],
            )
        )
    for r in report.shards:
        if r.error:
            log.error("%s shard %05d failed (no marker written, rerun to retry): %s", stage_name, r.shard, r.error.splitlines()[0])
    report.shards.sort(key=lambda r: r.shard)
    report.seconds = time.perf_counter() - t0
    return report


# ---------------------------------------------------------------------------------------------
# finished tables as Ray datasets


def read_dataset(out: str | os.PathLike, table: str) -> "ray.data.Dataset":
    """The completed shards of ``table`` as a Ray Dataset (one block per shard, read by Ray tasks).

    Columns keep the table's Arrow schema: per-frame vectors stay ``list<fixed_size_list<float32,N>>``.
    Downstream, use ``batch_format="pyarrow"`` and return Arrow with the same types: numpy returns
    become Ray tensor extension columns that ``datasets`` cannot read.
    """
    import ray

    from flameqa.io import shards as sh

    idx = sh.completed_shards(out, table)
    if not idx:
        raise FileNotFoundError(f"table {table!r} has no completed shards under {out} (run the stage that writes it first)")
    # plain tasks over our own reader rather than ray.data.read_parquet: same schema handling as
    # every other reader of the shards, and no fsspec HTTP probing (it needs aiohttp)
    read = ray.remote(num_cpus=0.25)(sh.read_shard)
    return ray.data.from_arrow_refs([read.remote(str(out), table, i) for i in idx])
