"""Resource bounds that tests can check: free disk space is checked before anything is written, with
a message that says what to do. (Peak memory per stage on a long input: bench/rss.py.)"""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest

from flameqa.config import load_config
from flameqa.io import shards as sh
from flameqa.runner import run_pipeline

Usage = namedtuple("Usage", "total used free")


def _ingest_cfg():
    return load_config(None, ["ingest.videos_per_shard=1", "ingest.min_clip_s=0.2"])


def test_full_disk_fails_before_writing(tmp_path, monkeypatch, video_factory):
    v = video_factory("a.mp4", seconds=1.0)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * 2**30, 10 * 2**30 - 5 * 2**20, 5 * 2**20))
    out = tmp_path / "out"
    with pytest.raises(sh.DiskSpaceError, match=r"only 5 MiB free .*need ≥ 256 MiB.*free space or point --out elsewhere"):
        run_pipeline(_ingest_cfg(), out, inputs=str(v), stages=["ingest"], show_progress=False)
    assert not (out / "config.yaml").exists() and not (out / "videos").exists()


def test_cli_full_disk_one_clear_line(tmp_path, monkeypatch, video_factory):
    from typer.testing import CliRunner

    from flameqa.cli import app

    v = video_factory("a.mp4", seconds=1.0)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * 2**30, 10 * 2**30, 0))
    r = CliRunner().invoke(app, ["ingest", "--input", str(v), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "only 0 MiB free" in r.output and "Traceback" not in r.output, r.output


def test_disk_filling_mid_run_loses_nothing(tmp_path, monkeypatch, video_factory):
    """Space runs out after the first shard: later shards fail before writing (no marker, no partial
    file, a clear error), the run reports them; with space back, a rerun completes them."""
    vids = [video_factory(f"v{i}.mp4", seconds=1.0) for i in range(3)]
    real = shutil.disk_usage
    calls = {"n": 0}

    def usage(p):
        calls["n"] += 1
        if (tmp_path / "out" / "clips" / "_done" / "00000.json").exists():
            return Usage(10 * 2**30, 10 * 2**30, 1 * 2**20)
        return real(p)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    out = tmp_path / "out"
    rep = run_pipeline(_ingest_cfg(), out, inputs=[str(v) for v in vids], stages=["ingest"], show_progress=False)
    errors = [r.error for s in rep.stages for r in s.shards if r.error]
    assert sh.completed_shards(out, "videos") == [0] and len(errors) == 2
    assert all("DiskSpaceError" in e and "MiB free" in e for e in errors), errors
    assert not list(out.rglob(".*.tmp")) and sorted(p.name for p in (out / "videos").glob("*.parquet")) == ["part-00000.parquet"]
    monkeypatch.setattr(shutil, "disk_usage", real)
    rep = run_pipeline(_ingest_cfg(), out, inputs=[str(v) for v in vids], stages=["ingest"], show_progress=False)
    assert rep.ok and sh.completed_shards(out, "videos") == [0, 1, 2]
    assert [s.skipped for s in rep.stages[0].shards] == [True, False, False]
    assert sh.read_table(out, "videos").num_rows == 3 and calls["n"] > 2
