"""Shards, markers, schemas and config: the contracts every stage relies on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from flameqa.config import ConfigError, load_config
from flameqa.io import shards as sh
from flameqa.io.schema import column_to_numpy, conform, load_schema, list_tables
from tests.conftest import ROOT, make_video


def test_every_schema_parses_and_fixed_size_columns_have_shapes():
    tables = list_tables()
    assert {"videos", "clips", "speech", "words", "faces", "speakers_faces", "flame", "samples"} <= set(tables)
    for t in tables:
        s = load_schema(t)
        for c in s.columns:
            if pa.types.is_list(c.type) and pa.types.is_fixed_size_list(c.type.value_type):
                assert c.shape and int(np.prod(c.shape)) == c.type.value_type.list_size, (t, c.name)


def _flame_row(T=5, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        clip_id="v.c000", video_id="v", track_id=0, segment=0, model_id="m", fps=25.0,
        frame_idx=np.arange(T, dtype=np.int32), valid=[True] * T, shape=rng.normal(size=10).astype(np.float32),
        expression=rng.normal(size=(T, 100)).astype(np.float32), jaw=rng.normal(size=(T, 3)), neck=np.zeros((T, 3)),
        global_pose=np.zeros((T, 3)), eyes=np.zeros((T, 6)), transl=np.zeros((T, 3)), camera="{}",
        fit_rmse_px=np.ones(T, np.float32), nme=np.ones(T, np.float32), jitter_ratio=0.5, converged=True, iterations=3, status="ok",
    )


def test_fixed_size_lists_roundtrip_numpy_and_datasets(tmp_path):
    rows = [_flame_row(5, 0), _flame_row(3, 1)]
    sh.write_shard(tmp_path, "flame", 0, conform("flame", rows))
    sh.write_marker(tmp_path, "flame", 0, {"rows": 2})
    t = sh.read_table(tmp_path, "flame")
    assert t.schema.field("expression").type == pa.list_(pa.list_(pa.float32(), 100))
    assert np.array_equal(column_to_numpy(t.column("expression"), 1), rows[1]["expression"])
    import datasets

    ds = datasets.Dataset.from_parquet(str(sh.shard_path(tmp_path, "flame", 0)))
    f = ds.features["expression"]
    assert f.length == -1 and f.feature.length == 100 and f.feature.feature.dtype == "float32"
    assert np.allclose(np.asarray(ds.with_format("numpy")[0]["expression"]), rows[0]["expression"])


def test_conform_names_bad_columns():
    with pytest.raises(ValueError, match="unexpected columns"):
        conform("clips", [{"clip_id": "a", "bogus": 1}])
    with pytest.raises(ValueError, match="missing required column 'video_id'"):
        conform("clips", {"clip_id": ["a"]})
    with pytest.raises(ValueError, match="per-frame width 100"):
        conform("flame", [dict(_flame_row(), expression=np.zeros((5, 7), np.float32))])


def test_unmarked_shards_are_invisible(tmp_path):
    sh.write_shard(tmp_path, "clips", 0, conform("clips", []))
    assert sh.completed_shards(tmp_path, "clips") == []
    assert sh.read_table(tmp_path, "clips").num_rows == 0
    sh.write_marker(tmp_path, "clips", 0, {"rows": 0})
    assert sh.completed_shards(tmp_path, "clips") == [0]


def test_config_errors_name_key_and_allowed_values(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fit:\n  devise: cuda\nspeech:\n  asr_backend: vosk\nbogus: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "fit.devise" in msg and "'device'" in msg
    assert "speech.asr_backend" in msg and "faster-whisper" in msg
    assert "bogus" in msg and "'runner'" in msg
    for p in (ROOT / "pipelines").glob("*.yaml"):
        if p.name != "train.yaml":
            load_config(p)  # shipped pipelines are valid
    assert load_config(None, ["runner.workers=3"]).runner.workers == 3


def test_cli_bad_config_fails_before_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  fpz: 30\n")
    r = subprocess.run([sys.executable, "-m", "flameqa", "run", str(bad), "--input", str(tmp_path), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "ingest.fpz" in r.stderr and "fps" in r.stderr
    assert not (tmp_path / "o").exists()


def test_killed_run_resumes_to_clean_result(tmp_path):
    """SIGKILL a real `flameqa ingest` mid-run, rerun: exactly the clean run's rows, nothing partial."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        make_video(src / f"v{i}.mp4", seconds=3.0)
    env = {**os.environ, "FLAMEQA_LOG": "WARNING"}
    cmd = [sys.executable, "-m", "flameqa", "ingest", "--input", str(src), "--set", "ingest.videos_per_shard=1"]
    clean = tmp_path / "clean"
    subprocess.run(cmd + ["--out", str(clean)], check=True, env=env, capture_output=True)
    out = tmp_path / "out"
    p = subprocess.Popen(cmd + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # generous: a loaded CI box starts Python slowly
    while time.time() < deadline and len(sh.completed_shards(out, "clips")) < 1:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    partial = sh.completed_shards(out, "clips")
    assert 0 < len(partial) < 8, "the kill should land mid-run"
    # what a reader sees after the kill is only complete shards
    assert sh.read_table(out, "videos").num_rows == len(sh.completed_shards(out, "videos"))
    subprocess.run(cmd + ["--out", str(out)], check=True, env=env, capture_output=True)
    for table in ("videos", "clips"):
        a = sh.read_table(clean, table).drop(["audio_path", "path"] if table == "clips" else ["audio_path"]).sort_by("video_id")
        b = sh.read_table(out, table).drop(["audio_path", "path"] if table == "clips" else ["audio_path"]).sort_by("video_id")
        a, b = a.to_pylist(), b.to_pylist()
        assert a == b
    assert not [q for q in out.rglob(".*.tmp")], "temp files left behind are never visible as shards"
