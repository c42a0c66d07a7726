"""`flameqa fit` and `flameqa bench fit` from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flameqa.io import shards as sh
from flameqa.io.schema import conform
from tests.fit.test_stage import faces_rows


def _app():
    from flameqa.cli import app

    return app


def test_fit_command(tmp_path, demo_fitter):
    from flameqa.fit.synth import make_tracks

    tracks, _ = make_tracks(demo_fitter.model, 60, track_frames=60, seed=2)
    sh.write_shard(tmp_path, "faces", 0, conform("faces", faces_rows(tracks)))
    sh.write_marker(tmp_path, "faces", 0, {"rows": 1})
    r = CliRunner().invoke(_app(), ["fit", "--out", str(tmp_path), "--device", "cpu", "--model", "demo", "--set", "fit.n_expr=20"])
    assert r.exit_code == 0, r.output
    (row,) = sh.read_table(tmp_path, "flame").to_pylist()
    assert row["status"] == "ok" and len(row["expression"][0]) == 100 and all(row["valid"])


def test_fit_command_rejects_bad_config(tmp_path):
    r = CliRunner().invoke(_app(), ["fit", "--out", str(tmp_path), "--set", "fit.smooth.preset=wobbly"])
    assert r.exit_code == 2 and "fit.smooth.preset" in r.output


def test_bench_fit_json():
    r = CliRunner().invoke(_app(), ["bench", "fit", "--frames", "120", "--track-frames", "60", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    for key in ("frames_per_s", "landmark_rmse_px", "noise_rms_px", "jaw_err_deg", "vertex_err_mm", "iterations", "device", "frames"):
        assert key in res
    assert res["frames"] == 120 and res["device"] == "cpu"
    assert res["landmark_rmse_px"] <= 1.05 * res["noise_rms_px"]
