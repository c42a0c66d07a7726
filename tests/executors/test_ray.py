"""The Ray executor against the local one: same tables, same markers, resumes across executors,
killed actors retried. One in-process Ray session (2 CPUs) serves the whole module."""

from __future__ import annotations

import importlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flameqa.config import PipelineConfig, RayConfig, load_config
from flameqa.io import shards as sh
from flameqa.io.schema import load_schema
from flameqa.runner import run_pipeline
from flameqa.stages.base import StageContext
from tests.conftest import GRID, ROOT, make_video, need_shared
from tests.executors.dummy_stages import BROKEN_SPEC, GPU_SPEC, SPEC, Interrupted

pytest.importorskip("ray")

RAY_SETTINGS = ["ray.num_cpus=2", "ray.object_store_memory=268435456"]


@pytest.fixture(scope="module")
def ray_session():
    from flameqa.executors.ray import init_ray, shutdown_ray

    tmp = Path(tempfile.mkdtemp(prefix="fq-ray-", dir="/tmp"))  # short: Ray's sockets live under it
    old_pp = os.environ.get("PYTHONPATH")
    # actors import the test-only stage (tests.executors.dummy_stages) from the project root
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([old_pp] if old_pp else []))
    # one declared GPU (none is physically here): GPU stages get GPU actors, torch still finds no
    # CUDA device and runs on CPU
    started = init_ray(RayConfig(num_cpus=2, num_gpus=1, object_store_memory=256 * 2**20, temp_dir=str(tmp)))
    yield
    if started:
        shutdown_ray()
    if old_pp is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old_pp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def synth_faces(monkeypatch):
    """Register the test-only SynthFaces stage in place of the real faces stage."""
    from flameqa import stages

    monkeypatch.setitem(stages.STAGES, "faces", SPEC)


def config(executor: str, *over: str, path: str | None = None) -> PipelineConfig:
    return load_config(path, [f"runner.executor={executor}", *RAY_SETTINGS, *over])


def synth_config(executor: str, *over: str) -> PipelineConfig:
    return config(executor, "ingest.min_clip_s=0.2", *over)  # the synthetic videos are short


def run(cfg: PipelineConfig, out: Path, inputs: Any = None, stages: list[str] | None = None, **extra: Any):
    ctx = StageContext(out=out, extra=extra)
    return run_pipeline(cfg, out, inputs=inputs, stages=stages, show_progress=False, ctx=ctx)


def errors(rep) -> list[str]:
    return [f"{s.stage}:{r.shard}: {r.error}" for s in rep.stages for r in s.shards if r.error]


# ---------------------------------------------------------------------------------------------
# comparing two output folders


def _close(a: Any, b: Any, where: str, tol: float) -> None:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), f"{where}: {a} != {b}"
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]", tol)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}", tol)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _rows(out: Path, table: str) -> list[dict[str, Any]]:
    """Rows sorted by the table key, with the run's own folder replaced by OUT in strings."""
    prefix = str(out)

    def strip(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace(prefix, "OUT")
        if isinstance(v, list):
            return [strip(x) for x in v]
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items()}
        return v

    rows = [strip(r) for r in sh.read_table(out, table).to_pylist()]
    key = load_schema(table).key
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in key))


MARKER_FIELDS = ("stage", "table", "shard", "rows", "status_counts", "config_hash", "version", "input_rows")


def assert_same_outputs(a: Path, b: Path, tol: float = 1e-6) -> list[str]:
    """Every table of ``a`` exists in ``b`` with the same rows (floats to ``tol``) and markers."""
    tables = sh.list_table_dirs(a)
    assert tables == sh.list_table_dirs(b)
    for t in tables:
        assert sh.completed_shards(a, t) == sh.completed_shards(b, t), t
        for idx in sh.completed_shards(a, t):
            ma, mb = sh.read_marker(a, t, idx), sh.read_marker(b, t, idx)
            assert {k: ma[k] for k in MARKER_FIELDS} == {k: mb[k] for k in MARKER_FIELDS}, (t, idx)
        ra, rb = _rows(a, t), _rows(b, t)
        assert len(ra) == len(rb), t
        for i, (x, y) in enumerate(zip(ra, rb)):
            _close(x, y, f"{t}[{i}]", tol)
    return tables


def synth_videos(folder: Path, n: int = 3) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    # v2 has a cut: two clips; the others one
    vids = [make_video(folder / f"v{i}.mp4", seconds=0.6 + 0.2 * i, size=(64, 48), cut_at=0.4 if i == 2 else None) for i in range(n)]
    return [str(v) for v in vids]


# ---------------------------------------------------------------------------------------------
# the demo pipeline on real clips


def _landed(names) -> list[str]:
    from flameqa.stages import STAGES

    ok = []
    for n in names:
        try:
            importlib.import_module(STAGES[n].split(":")[0])
        except ImportError:
            continue
        ok.append(n)
    return ok


def test_demo_pipeline_on_ray_equals_local(tmp_path, ray_session):
    need_shared("face_video", "grid")
    clips = sorted(GRID.glob("*.mpg"))[:2]
    base = ["ingest.videos_per_shard=2", "speech.diarization_backend=none"]  # one actor a stage; no 20 s numba warm-up
    path = str(ROOT / "pipelines" / "demo.yaml")
    stages = _landed(load_config(path).stages)
    local = run(config("local", *base, path=path), tmp_path / "local", [str(c) for c in clips], stages)
    if not local.ok:
        pytest.skip(f"the demo pipeline fails locally here (models missing?): {errors(local)[:1]}")
    ray_rep = run(config("ray", *base, path=path), tmp_path / "ray", [str(c) for c in clips], stages)
    assert ray_rep.ok, errors(ray_rep)
    # per-frame numbers come from other processes with other thread counts, and the local fit
    # splits batches over inner processes: equal to the fitter's batch-independence tolerance
    # (tests/fit/test_fitter.py::test_batch_independence)
    tables = assert_same_outputs(tmp_path / "local", tmp_path / "ray", tol=2e-4)
    assert {"videos", "clips"} <= set(tables)
    for s in ray_rep.stages:
        assert [r.shard for r in s.shards] == [0] and not any(r.skipped for r in s.shards), s.stage


# ---------------------------------------------------------------------------------------------
# synthetic clips + the test-only stage (fast, no shared media)


def test_ingest_and_stage_on_ray_equal_local_despite_a_killed_actor(tmp_path, ray_session, synth_faces):
    from flameqa.executors.ray import read_dataset

    inputs = synth_videos(tmp_path / "media", 3)
    over = ["ingest.videos_per_shard=2", "runner.batch_groups=2"]  # uneven: shards of 2 and 1 videos
    flags = tmp_path / "flags"
    flags.mkdir()
    rep_l = run(synth_config("local", *over), tmp_path / "local", inputs, ["ingest", "faces"], fail_clips=["v1.c000"])
    # on Ray, the actor processing v0.c000 is also SIGKILLed once, mid-shard
    kill = dict(kill_clips=["v0.c000"], flag_dir=str(flags))
    rep_r = run(synth_config("ray", *over), tmp_path / "ray", inputs, ["ingest", "faces"], fail_clips=["v1.c000"], **kill)
    assert rep_l.ok and rep_r.ok, errors(rep_r)
    assert (flags / "killed-v0.c000").exists()  # the actor really died once
    assert assert_same_outputs(tmp_path / "local", tmp_path / "ray") == ["clips", "faces", "videos"]
    faces = sh.read_table(tmp_path / "ray", "faces")
    status = dict(zip(faces.column("clip_id").to_pylist(), faces.column("status").to_pylist()))
    assert status == {"v0.c000": "ok", "v1.c000": "failed", "v2.c000": "ok", "v2.c001": "ok"}  # every row

    # the finished table goes back into Ray Data with its fixed-size lists, not tensor extensions
    want = load_schema("faces").arrow.field("landmarks").type
    assert pa.types.is_fixed_size_list(want.value_type)
    batch = read_dataset(tmp_path / "ray", "faces").map_batches(lambda b: b, batch_format="pyarrow").take_batch(10, batch_format="pyarrow")
    assert batch.schema.field("landmarks").type == want and batch.num_rows == 4


def _ingest_locally(tmp_path, n: int = 3):
    inputs = synth_videos(tmp_path / "media", n)
    out = tmp_path / "out"
    assert run(synth_config("local", "ingest.videos_per_shard=1"), out, inputs, ["ingest"]).ok
    return out


def test_shard_that_always_kills_its_actor_fails_alone(tmp_path, ray_session, synth_faces):
    out = _ingest_locally(tmp_path)
    rep = run(synth_config("ray", "ray.max_task_retries=0"), out, stages=["faces"], poison_clips=["v2.c001"])
    faces = rep.stages[0]
    assert [r.shard for r in faces.failed_shards] == [2] and "died" in faces.failed_shards[0].error
    assert sh.completed_shards(out, "faces") == [0, 1]  # no marker for the failed shard: a rerun redoes it


def test_interrupted_local_run_resumed_by_ray_and_back(tmp_path, ray_session, synth_faces):
    inputs = synth_videos(tmp_path / "media", 3)
    over = ["ingest.videos_per_shard=1"]
    clean = tmp_path / "clean"
    assert run(synth_config("local", *over), clean, inputs, ["ingest", "faces"]).ok

    out = tmp_path / "out"
    with pytest.raises(Interrupted):  # stops in the middle of faces shard 1
        run(synth_config("local", *over), out, inputs, ["ingest", "faces"], interrupt_clips=["v1.c000"])
    assert sh.completed_shards(out, "faces") == [0]
    rep = run(synth_config("ray", *over), out, inputs, ["ingest", "faces"])
    assert rep.ok, errors(rep)
    assert [r.skipped for r in rep.stages[0].shards] == [True, True, True]  # ingest: all local shards reused
    assert [r.skipped for r in rep.stages[1].shards] == [True, False, False]
    assert_same_outputs(clean, out)

    # and back: a local run over the Ray output has nothing left to do
    again = run(synth_config("local", *over), out, inputs, ["ingest", "faces"])
    assert all(r.skipped for s in again.stages for r in s.shards)


def test_gpu_stage_gets_a_gpu_actor_when_the_cluster_has_one(tmp_path, ray_session, monkeypatch):
    from flameqa import stages

    monkeypatch.setitem(stages.STAGES, "faces", GPU_SPEC)
    out = _ingest_locally(tmp_path, 2)
    rep = run(synth_config("ray"), out, stages=["faces"])
    assert rep.ok, errors(rep)
    flags = sh.read_table(out, "faces").column("flags").to_pylist()
    assert flags and all(f == ["cuda_visible=0|device=cuda"] for f in flags), flags


def test_actors_that_cannot_start_stop_the_stage_with_the_cause(tmp_path, ray_session, monkeypatch):
    from flameqa import stages

    monkeypatch.setitem(stages.STAGES, "faces", BROKEN_SPEC)
    out = _ingest_locally(tmp_path, 2)
    with pytest.raises(RuntimeError, match="missing.task is absent.*rerun to resume"):
        run(synth_config("ray"), out, stages=["faces"])
    assert sh.completed_shards(out, "faces") == []
