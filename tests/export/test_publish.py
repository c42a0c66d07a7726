"""Publishing against the local Hub server (tests/hubserver.py): create + upload with
huggingface_hub (legacy LFS, HF_HUB_DISABLE_XET=1), resume after an interrupted upload, load the
result back with datasets from that server, and the planted token never in files or logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flameqa.export.config import ExportConfig
from flameqa.export.hub_folder import export_dataset
from flameqa.export.publish import PublishError, check_no_secret, commit_batches, publish_folder
from tests.export.conftest import TOKEN

REPO = "flameqa-org/flameqa-test"

LOAD_BACK = r"""
import json, sys
import numpy as np
import datasets
from datasets import Audio
ds = datasets.load_dataset(sys.argv[1])
res = {"features": {k: str(v) for k, v in ds["train"].features.items() if k in ("expression", "answer_audio")}, "rows": {}}
for split, d in ds.items():
    d = d.cast_column("answer_audio", Audio(decode=False)).cast_column("question_audio", Audio(decode=False))
    res["rows"][split] = {r["sample_id"]: [float(np.asarray(r["expression"], np.float64).sum()), len(r["answer_audio"]["bytes"])] for r in d}
print("RESULT " + json.dumps(res))
"""


def _env(hub, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        FLAMEQA_LOG="DEBUG",  # the most talkative logs must not show the token either
        COLUMNS="200",
    )
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def _published(folder: Path) -> list[str]:
    """Files of an export that belong in the repo (no hidden files or folders)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.relative_to(folder).parts))


def _local_rows(folder: Path) -> dict[str, dict[str, list]]:
    import numpy as np

    res: dict[str, dict[str, list]] = {}
    for p in sorted((folder / "data").glob("*.parquet")):
        split = p.name.split("-")[0]
        t = pq.read_table(p)
        for r in t.select(["sample_id"]).to_pylist():
            res.setdefault(split, {})[r["sample_id"]] = None
        from flameqa.io.schema import column_to_numpy

        for i, sid in enumerate(t.column("sample_id").to_pylist()):
            res[split][sid] = [float(np.asarray(column_to_numpy(t.column("expression"), i), np.float64).sum()), len(t.column("answer_audio")[i]["bytes"].as_py())]
    return res


def test_publish_resume_load_back_and_no_token_leak(hub, export_copy, assembled, tmp_path):
    env = _env(hub, tmp_path)
    logs = []
    (export_copy / ".flameqa-export.tmp").mkdir()  # leftovers of a crashed export are never published
    (export_copy / ".flameqa-export.tmp" / "junk.parquet").write_bytes(b"junk")
    # 1. an upload interrupted before its commit: the data went up, the commit failed
    hub.fail_commits = 1
    r = _run(["-m", "flameqa", "publish", str(export_copy), "--repo-id", REPO, "--private"], env, tmp_path)
    logs.append(r.stdout + r.stderr)
    assert r.returncode != 0
    puts = hub.lfs_puts
    assert puts == 2  # both parquet files reached the server
    # 2. rerun (endpoint given on the command line this time): resumes without sending the LFS objects again
    env2 = {k: v for k, v in env.items() if k != "HF_ENDPOINT"}
    r = _run(["-m", "flameqa", "publish", str(export_copy), "--repo-id", REPO, "--private", "--endpoint", hub.url], env2, tmp_path)
    logs.append(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert hub.lfs_puts == puts
    repo = hub.repos[("dataset", REPO)]
    assert repo.private
    assert sorted(repo.files) == _published(export_copy)
    assert hub.auth_headers and set(hub.auth_headers) == {f"Bearer {TOKEN}"}
    # 3. load it back from the server with datasets
    r = _run(["-c", LOAD_BACK, REPO], env, tmp_path)
    logs.append(r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert res["features"] == {"expression": "List(List(Value('float32'), length=100))", "answer_audio": "Audio(sampling_rate=16000, decode=True, num_channels=None, stream_index=None)"}
    assert res["rows"] == _local_rows(export_copy)
    # 4. a re-export with more, smaller shards: publishing again leaves no stale remote file
    export_dataset(assembled.out, export_copy, ExportConfig(splits={"train": 0.5, "test": 0.5}, shard_bytes=250_000, row_group_bytes=100_000))
    r = _run(["-m", "flameqa", "publish", str(export_copy), "--repo-id", REPO], env, tmp_path)
    logs.append(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    local = _published(export_copy)
    assert sorted(repo.files) == local and len(local) > 3
    # the planted token: in no log, no request URL, no file written (export, HF cache, run folder)
    for text in logs:
        assert TOKEN not in text
    assert not any(TOKEN in req for req in hub.requests)
    for root in (export_copy, tmp_path / "hf_home", assembled.out):
        for p in root.rglob("*"):
            if p.is_file():
                assert TOKEN.encode() not in p.read_bytes(), p
    assert hub.unknown == []


def test_publish_refuses_a_folder_holding_the_token(hub, export_copy, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    readme = export_copy / "README.md"
    readme.write_text(readme.read_text() + f"\ntoken: {TOKEN}\n")
    with pytest.raises(PublishError, match="contains your Hugging Face token") as e:
        publish_folder(export_copy, REPO)
    assert TOKEN not in str(e.value)
    assert hub.requests == []  # nothing was sent
    check_no_secret(export_copy, None)  # no token configured: nothing to find


def test_publish_needs_an_export(tmp_path):
    with pytest.raises(PublishError, match="flameqa export"):
        publish_folder(tmp_path, REPO)


def test_commit_batches_by_bytes(tmp_path):
    (tmp_path / "data").mkdir()
    for i, n in enumerate([100, 100, 300, 50]):
        (tmp_path / "data" / f"train-{i:05d}-of-00004.parquet").write_bytes(b"x" * n)
    (tmp_path / "data" / ".hidden").write_bytes(b"x")
    assert commit_batches(tmp_path, 250) == [
        ["data/train-00000-of-00004.parquet", "data/train-00001-of-00004.parquet"],
        ["data/train-00002-of-00004.parquet"],
        ["data/train-00003-of-00004.parquet"],
    ]
