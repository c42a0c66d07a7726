"""`flameqa faces` and `flameqa bench faces` from the command line; light imports."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from flameqa.io import shards as sh

from .conftest import clip_row, grid_clips, write_table


def _app():
    from flameqa.cli import app

    return app


def test_faces_command(tmp_path, bundle):
    clip = grid_clips()[0]
    write_table(tmp_path, "clips", [[clip_row(f"{clip.stem}.c000", clip)]])
    write_table(tmp_path, "speech", [[dict(clip_id=f"{clip.stem}.c000", turn_id=0, speaker="S0", start_s=0.6, end_s=2.3, status="ok")]])
    r = CliRunner().invoke(_app(), ["faces", "--out", str(tmp_path), "--set", "faces.max_segment_frames=50"])
    assert r.exit_code == 0, r.output
    faces = sh.read_table(tmp_path, "faces")
    assert faces.num_rows == 2 and faces.column("segment").to_pylist() == [0, 1]  # 75 frames in windows of 50
    (row,) = sh.read_table(tmp_path, "speakers_faces").to_pylist()
    assert row["speaker"] == "S0" and row["track_id"] == 0 and row["score"] > 0.2


def test_faces_command_rejects_bad_config(tmp_path):
    r = CliRunner().invoke(_app(), ["faces", "--out", str(tmp_path), "--set", "faces.landmarker.max_sidez=3"])
    assert r.exit_code == 2 and "max_sidez" in r.output


def test_bench_faces_json(bundle):
    clip = grid_clips()[0]
    r = CliRunner().invoke(_app(), ["bench", "faces", "--video", str(clip), "--json", "--frames", "40"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["workers"] == 1 and res["landmarker_fps"] > 0 and res["stage_fps"] > 0 and res["stage_frames"] == 75


def test_vision_imports_stay_light():
    heavy = ("mediapipe", "cv2", "av", "torch", "scipy")
    code = (
        "import sys, flameqa, flameqa.vision.config, flameqa.vision.stage, flameqa.cli.vision, flameqa.stages; "
        "flameqa.stages.stage_class('faces'); flameqa.stages.stage_class('speakers'); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"importing the face stages pulled in: {r.stdout.strip()}"


def test_bench_faces_inner_pool_counts_every_frame(bundle):
    """--pool inner: the clips in one shard over the stage's own processes (a spawned helper)."""
    clip = grid_clips()[0]
    r = CliRunner().invoke(_app(), ["bench", "faces", "--video", str(clip), "--json", "--frames", "40", "--workers", "2", "--pool", "inner"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    # two 1.5 s clips, each on its own 25 fps grid from its start: 38 frames each
    assert res["workers"] == 2 and res["pool"] == "inner" and res["stage_frames"] == 76
    r = CliRunner().invoke(_app(), ["bench", "faces", "--video", str(clip), "--frames", "40", "--pool", "threads"])
    assert r.exit_code != 0
