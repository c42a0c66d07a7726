"""``flameqa bench pipeline``: the documented JSON keys on a short clip (no timing assertions), and
the K-copies input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.conftest import make_video

KEYS = {
    "media_seconds", "wall_seconds", "realtime_factor", "peak_rss_mb", "stages", "bottleneck",
    "bottleneck_limit_realtime", "engine_limits", "machine", "load_average", "cpu_seconds", "cores",
}


def test_concat_copies_plays_k_times_longer(tmp_path):
    from flameqa.bench.pipeline import concat_copies
    from flameqa.io.media import iter_frames, probe

    src = make_video(tmp_path / "v.mp4", seconds=2.0, size=(64, 48))
    dst = concat_copies(src, tmp_path / "v3.mp4", 3)
    p = probe(dst)
    assert abs(p.duration_s - 6.0) < 0.2 and p.has_audio
    assert sum(1 for _ in iter_frames(dst, fps=25)) == 150


def test_bench_pipeline_json_has_the_documented_keys(tmp_path):
    from flameqa.cli import app

    video = make_video(tmp_path / "talk.mp4", seconds=2.0, size=(160, 120))
    # ingest only: the keys and the repeat are what is tested, not the models' speed
    r = CliRunner().invoke(app, ["bench", "pipeline", "--video", str(video), "--repeat", "2", "--videos", "2", "--set", "stages=[ingest]", "--limit", "all", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert KEYS <= res.keys(), KEYS - res.keys()
    assert abs(res["media_seconds"] - 8.0) < 0.4 and res["videos"] == 2  # 2 inputs of 2 copies of 2 s
    assert set(res["stages"]) == {"ingest"} and res["bottleneck"] == "ingest"
    assert {"seconds", "items_per_s", "items", "unit"} <= res["stages"]["ingest"].keys()
    assert res["engine_limits"]["ingest"]["realtime"] > 0 and res["bottleneck_limit_realtime"] == res["engine_limits"]["ingest"]["realtime"]
    assert res["peak_rss_mb"] > 0 and len(res["load_average"]) == 3 and not res["failed_shards"]


def test_bench_pipeline_rejects_an_unknown_limit(tmp_path):
    from flameqa.cli import app

    video = make_video(tmp_path / "talk.mp4", seconds=1.0, size=(64, 48))
    r = CliRunner().invoke(app, ["bench", "pipeline", "--video", str(video), "--limit", "facez", "--json"])
    assert r.exit_code == 2 and "facez" in r.output


def test_gpu_production_config_loads():
    from flameqa.config import load_config
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "pipelines" / "flameqa.yaml")
    assert cfg.speech.device == "cuda" and cfg.fit.device == "cuda" and cfg.speech.asr_backend == "faster-whisper"
    assert "large" in cfg.speech.asr_model
    assert cfg.runner.stage_workers["faces"] == 16 and cfg.runner.concurrent_stages
