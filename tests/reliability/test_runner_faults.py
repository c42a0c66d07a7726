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
from tests.reliability.helpers import PLANTED_LLM_KEY, code_root


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


@pytest.mark.parametrize(
    "sets,says",
    [
        (["fit.model=/nonexistent/flame2023.pkl"], "stage 'fit' cannot start: FLAME model file /nonexistent/flame2023.pkl not found"),
        (["faces.landmarker.model=/nonexistent/face_landmarker.task"], "stage 'faces' cannot start"),
        (["speech.asr_model=whisper-nonexistent", "speech.allow_download=true"], "stage 'speech' cannot start: whisper model 'whisper-nonexistent' is not in the model cache"),
    ],
    ids=["fit", "faces", "speech_download"],
)
def test_a_stage_that_cannot_start_stops_the_run_before_any_work(tmp_path, three_videos, sets, says):
    """A missing model file of a late stage ends the run before the first stage works, without
    touching OUT (it used to show only after ingest, speech and faces had run). The download case
    runs offline (HF_HUB_OFFLINE in tests): the hub client's error becomes one readable line."""
    from typer.testing import CliRunner

    from flameqa.cli import app

    out = tmp_path / "out"
    args = ["run", str(code_root() / "pipelines" / "demo.yaml"), "--input", three_videos[0], "--out", str(out)]
    r = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert r.exit_code == 2, r.output
    assert says in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_an_input_path_that_does_not_exist_fails_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from flameqa.cli import app

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", str(code_root() / "pipelines" / "demo.yaml"), "--input", str(tmp_path / "videos_typo"), "--out", str(out)])
    assert r.exit_code == 2 and "videos_typo does not exist" in r.output, r.output
    assert not out.exists()


def test_preflight_only_warns_where_a_stage_has_completed_shards_and_skips_ray(tmp_path, caplog):
    """A resumed run, or an OUT copied from another machine, may have nothing left for a stage
    whose model is missing here: that is a warning, and the stage fails only if it must start.
    On Ray the workers' machines decide, so the driver checks nothing."""
    from flameqa.io.schema import conform
    from flameqa.runner import PreflightError, preflight

    cfg = load_config(None, ["fit.model=/nonexistent/flame2023.pkl"])
    with pytest.raises(PreflightError, match="stage 'fit' cannot start"):
        preflight(cfg, ["fit"], tmp_path)
    sh.write_shard(tmp_path, "flame", 0, conform("flame", []))
    sh.write_marker(tmp_path, "flame", 0, {"rows": 0})
    with caplog.at_level("WARNING", logger="flameqa.runner"):
        preflight(cfg, ["fit"], tmp_path)
    assert "stage 'fit' cannot start" in caplog.text
    preflight(load_config(None, ["fit.model=/nonexistent/flame2023.pkl", "runner.executor=ray"]), ["fit"], tmp_path / "fresh")
