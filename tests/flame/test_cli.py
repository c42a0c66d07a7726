"""`flameqa model info|demo`, and the import boundary (``import flameqa`` stays torch-free)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import flameqa.cli.flame  # noqa: F401  (registers the commands)
from flameqa.cli.app import app

from ._fixtures import random_model


def test_model_demo_writes_the_head(tmp_path: Path, bundle_path: Path):
    out = tmp_path / "sub" / "demo.npz"
    r = CliRunner().invoke(app, ["model", "demo", "--out", str(out), "--bundle", str(bundle_path)])
    assert r.exit_code == 0, r.output
    with np.load(out, allow_pickle=False) as z:
        assert str(z["model_id"]) == "flameqa-demo-head"


def test_model_info_json_and_text(demo_npz: Path, tmp_path: Path):
    r = CliRunner().invoke(app, ["model", "info", str(demo_npz), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["model_id"] == "flameqa-demo-head" and d["n_shape"] == 300 and d["n_expr"] == 100
    assert [j["name"] for j in d["joints"]] == ["global", "neck", "jaw", "eye_left", "eye_right"]
    assert d["mediapipe_embedding"]["landmarks"] == 478 and "NOT FLAME" in d["license"]
    np.savez(tmp_path / "flame2023_Open.npz", **random_model())
    r = CliRunner().invoke(app, ["model", "info", str(tmp_path / "flame2023_Open.npz")])
    assert r.exit_code == 0 and "CC-BY-4.0" in r.output and "MediaPipe embedding: none" in r.output
    r = CliRunner().invoke(app, ["model", "info", str(tmp_path / "missing.pkl")])
    assert r.exit_code == 2 and "never shipped" in r.output


def test_import_flameqa_does_not_import_torch():
    code = "import sys, flameqa, flameqa.cli.flame; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
