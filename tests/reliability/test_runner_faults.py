"""Executor faults without the heavy models: a worker process that dies, a stage that cannot start,
secrets that must reach worker processes intact. Uses the test-only stages of tests/executors."""

from __future__ import annotations

import pickle

import pytest

from flameqa.config import load_config
from flameqa.io import shards as sh
from flameqa.runner import run_pipeline
from flameqa.stages.base import StageContext
from tests.executors.dummy_stages import BROKEN_SPEC, SPEC
from tests.reliability.helpers import PLANTED_LLM_KEY


@pytest.fixture
def three_videos(tmp_path, video_factory):
    return [str(video_factory(f"v{i}.mp4", seconds=1.0, audio=False)) for i in range(3)]


def _run(out, inputs, stages, workers=1, **extra):
    cfg = load_config(None, ["ingest.videos_per_shard=1", "ingest.min_clip_s=0.2", f"runner.workers={workers}"])
    return run_pipeline(cfg, out, inputs=inputs, stages=stages, show_progress=False, ctx=StageContext(out=out, extra=extra))


def test_dead_worker_fails_only_its_shard(tmp_path, monkeypatch, three_videos):
    from flameqa import stages

    monkeypatch.setitem(stages.STAGES, "faces", SPEC)  # workers get the spec from the parent
    out = tmp_path / "out"
    assert _run(out, three_videos, ["ingest"]).ok
    rep = _run(out, None, ["faces"], workers=2, poison_clips=["v1.c000"])
    errs = {r.shard: r.error for r in rep.stages[0].shards if r.error}
    assert list(errs) == [1] and "worker process died twice" in errs[1] and "rerun" in errs[1], errs
    assert sh.completed_shards(out, "faces") == [0, 2]
    assert not list((out / "faces").glob(".*.tmp"))
    rep = _run(out, None, ["faces"], workers=2)  # the poison is gone: the rerun completes it
    assert rep.ok and sh.completed_shards(out, "faces") == [0, 1, 2]


@pytest.mark.parametrize("workers", [1, 2])
def test_stage_that_cannot_start(tmp_path, monkeypatch, three_videos, workers):
    from flameqa import stages

    monkeypatch.setitem(stages.STAGES, "faces", BROKEN_SPEC)
    out = tmp_path / "out"
    assert _run(out, three_videos, ["ingest"]).ok
    rep = _run(out, three_videos, ["ingest", "faces", "speakers"], workers=workers)
    names = [s.stage for s in rep.stages]
    assert names == ["ingest", "faces"], "stages after one that cannot start are not run"
    st = rep.stages[1]
    assert st.start_error and "could not start" in st.start_error and "missing.task" in st.start_error
    assert [r.error == st.start_error for r in st.shards] == [True] * 3
    assert not (out / "faces").exists() and rep.stages[0].shards and not rep.ok


def test_secrets_reach_worker_processes():
    cfg = load_config(None, [f"assemble.generator.api_key={PLANTED_LLM_KEY}"])
    back = pickle.loads(pickle.dumps(cfg))  # what the process pool sends to each worker
    assert back.assemble.generator.api_key.get_secret_value() == PLANTED_LLM_KEY
    assert PLANTED_LLM_KEY not in cfg.model_dump_json()  # and never in a JSON dump
