"""Export to a Hub-layout folder: splits by identity, byte-sized shards, the card, and the round
trip export → datasets.load_dataset (offline, streaming too) → arrays equal to the flame table."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from flameqa.export.config import ExportConfig
from flameqa.export.hub_folder import assign_splits, export_dataset, license_rollup
from flameqa.io import shards as sh
from flameqa.io.schema import column_to_numpy

MOTION = ("expression", "jaw", "neck", "global_pose", "eyes", "transl")
FILE_RE = re.compile(r"^(?P<split>\w+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")


def _front_matter(readme: str) -> dict:
    m = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
    assert m, "README.md has no YAML front matter"
    return yaml.safe_load(m.group(1))


def _flame_frames(out) -> dict[tuple[str, int], dict[int, dict[str, np.ndarray]]]:
    """(clip_id, track_id) → frame index → per-frame values, from the flame table itself."""
    t = sh.read_table(out, "flame")
    res: dict = {}
    for i, (cid, tid) in enumerate(zip(t.column("clip_id").to_pylist(), t.column("track_id").to_pylist())):
        fi = t.column("frame_idx")[i].as_py()
        arrs = {n: column_to_numpy(t.column(n), i) for n in MOTION}
        valid = t.column("valid")[i].as_py()
        d = res.setdefault((cid, tid), {})
        for k, f in enumerate(fi):
            d[f] = {**{n: arrs[n][k] for n in MOTION}, "valid": valid[k]}
    return res


def test_assign_splits_is_deterministic_stable_and_proportional():
    groups = [f"video{i:04d}" for i in range(2000)]
    a = assign_splits(groups, {"train": 0.9, "test": 0.1}, seed=0)
    assert a == assign_splits(list(reversed(groups)), {"train": 0.9, "test": 0.1}, seed=0)
    assert abs(sum(v == "test" for v in a.values()) - 200) < 60
    assert a != assign_splits(groups, {"train": 0.9, "test": 0.1}, seed=1)
    # growing the data never moves a group
    b = assign_splits(groups + [f"new{i}" for i in range(500)], {"train": 0.9, "test": 0.1}, seed=0)
    assert all(b[g] == a[g] for g in groups)
    # tiny datasets still fill every split with a positive fraction
    tiny = assign_splits(["a", "b"], {"train": 0.9, "test": 0.1}, seed=0)
    assert sorted(tiny.values()) == ["test", "train"]
    assert set(assign_splits(["a"], {"train": 0.9, "test": 0.1}).values()) <= {"train", "test"}


def test_license_rollup():
    assert license_rollup({"CC-BY-4.0": 3}) == ("cc-by-4.0", None)
    assert license_rollup({"cc-by-4.0": 3, "apache-2.0": 1}) == ("other", "mixed: apache-2.0, cc-by-4.0")
    assert license_rollup({"unknown": 2}) == ("unknown", None)
    assert license_rollup({"my own terms": 1}) == ("other", "my own terms")
    assert license_rollup({"cc-by-4.0": 1}, override="MIT") == ("mit", None)


def test_export_layout_card_and_identity_splits(assembled, exported):
    files = sorted(p.name for p in (exported / "data").iterdir())
    assert files == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    assert not any(p.name.startswith(".") for p in exported.iterdir())  # no staging left behind
    readme = (exported / "README.md").read_text()
    fm = _front_matter(readme)
    assert fm["configs"] == [{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in ("train", "test")]}]
    assert (fm["license"], fm["license_name"]) == ("other", "mixed: apache-2.0, cc-by-4.0")
    feats = {f["name"]: f for f in fm["dataset_info"]["features"]}
    assert feats["answer_audio"]["dtype"] == {"audio": {"sampling_rate": 16000}}
    assert feats["expression"]["list"] == {"list": "float32", "length": 100}
    assert sum(s["num_examples"] for s in fm["dataset_info"]["splits"]) == sh.read_table(assembled.out, "samples").num_rows
    for section in ("## How it was built", "## License", "## Citation", "```bibtex", "flameqa-demo-head", "pipeline config hash", "rejected by filters"):
        assert section in readme, section
    # no identity in two splits
    ids = {f: set(pq.read_table(exported / "data" / f, columns=["identity"]).column("identity").to_pylist()) for f in files}
    assert ids["train-00000-of-00001.parquet"].isdisjoint(ids["test-00000-of-00001.parquet"])


def test_round_trip_load_dataset_offline_and_streaming(assembled, exported, tmp_path):
    import datasets
    from datasets import Audio, List, Value

    assert os.environ.get("HF_DATASETS_OFFLINE") == "1" and os.environ.get("HF_HUB_OFFLINE") == "1"
    flame = _flame_frames(assembled.out)
    ds = datasets.load_dataset(str(exported), cache_dir=str(tmp_path / "cache"))
    n_samples = sh.read_table(assembled.out, "samples").num_rows
    assert sum(d.num_rows for d in ds.values()) == n_samples
    feats = ds["train"].features
    assert feats["expression"] == List(List(Value("float32"), length=100))
    assert feats["jaw"] == List(List(Value("float32"), length=3)) and feats["eyes"] == List(List(Value("float32"), length=6))
    assert feats["answer_audio"] == Audio(sampling_rate=16000) and feats["question_audio"] == Audio(sampling_rate=16000)
    seen = 0
    for split, d in ds.items():
        d = d.cast_column("answer_audio", Audio(decode=False)).cast_column("question_audio", Audio(decode=False)).with_format("numpy", columns=[*MOTION, "frame_idx", "valid"], output_all_columns=True)
        for r in d:
            frames = flame[(r["clip_id"], int(r["answer_track_id"]))]
            assert r["expression"].shape == (len(r["frame_idx"]), 100) and r["expression"].dtype == np.float32
            for n in MOTION:
                np.testing.assert_array_equal(r[n], np.stack([frames[int(f)][n] for f in r["frame_idx"]]), err_msg=f"{r['sample_id']} {n}")
            np.testing.assert_array_equal(r["valid"], [frames[int(f)]["valid"] for f in r["frame_idx"]])
            wav, sr = sf.read(io.BytesIO(r["answer_audio"]["bytes"]))
            assert sr == 16000 and abs(len(wav) / sr - r["duration_s"]) < 1e-3
            seen += 1
    assert seen == n_samples
    # streaming: the same rows, the same arrays
    st = datasets.load_dataset(str(exported), split="test", streaming=True)
    st = st.cast_column("answer_audio", Audio(decode=False)).cast_column("question_audio", Audio(decode=False))
    rows = list(st)
    assert [r["sample_id"] for r in rows] == ds["test"]["sample_id"]
    for r in rows:
        frames = flame[(r["clip_id"], r["answer_track_id"])]
        np.testing.assert_array_equal(np.asarray(r["expression"], np.float32), np.stack([frames[f]["expression"] for f in r["frame_idx"]]))


def test_card_loading_snippet_runs_as_written(exported, tmp_path):
    """The card's Loading code, pasted as is (the folder in place of the repo), runs in this
    environment, which has no torchcodec: reading a row must not need an audio decoder."""
    import subprocess
    import sys

    code = re.search(r"## Loading\n\n```python\n(.*?)```", (exported / "README.md").read_text(), re.S).group(1)
    code = code.replace("<this repo or folder>", str(exported)) + "assert expr.ndim == 2 and expr.shape[1] == 100 and sr == 16000 and len(wav)\n"
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]


def test_shards_sized_by_bytes_and_reexport_replaces(assembled, tmp_path):
    import datasets

    dest = tmp_path / "small"
    rep = export_dataset(assembled.out, dest, ExportConfig(splits={"train": 1.0}, shard_bytes=250_000, row_group_bytes=100_000))
    names = sorted(p.name for p in (dest / "data").iterdir())
    n = len(names)
    assert n >= 3, names
    assert [FILE_RE.match(x)["i"] for x in names] == [f"{i:05d}" for i in range(n)] and {FILE_RE.match(x)["n"] for x in names} == {f"{n:05d}"}
    for x in names:  # a file closes at the first row group that reaches shard_bytes
        meta = pq.ParquetFile(dest / "data" / x).metadata
        assert meta.num_rows >= 1
    assert rep.splits["train"].rows == sh.read_table(assembled.out, "samples").num_rows
    ds = datasets.load_dataset(str(dest), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == rep.splits["train"].rows
    # a second export with bigger files leaves no stale shard behind
    (dest / "keep.txt").write_text("user file")
    export_dataset(assembled.out, dest, ExportConfig(splits={"train": 1.0}))
    assert sorted(p.name for p in (dest / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    assert (dest / "keep.txt").exists()


def test_export_without_samples_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="flameqa assemble"):
        export_dataset(tmp_path, tmp_path / "dest")


def test_export_config_rejects_bad_splits():
    with pytest.raises(ValueError, match="split name"):
        ExportConfig(splits={"train set": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        ExportConfig(splits={"train": -1.0})


def test_cli_export(assembled, tmp_path):
    from typer.testing import CliRunner

    from flameqa.cli.app import app

    dest = tmp_path / "cli"
    res = CliRunner().invoke(app, ["export", str(assembled.out), "--dest", str(dest), "--splits", "train=0.5,test=0.5", "--by", "video"])
    assert res.exit_code == 0, res.output
    assert "train:" in res.output and "test:" in res.output
    fm = _front_matter((dest / "README.md").read_text())
    assert [c["split"] for c in fm["configs"][0]["data_files"]] == ["train", "test"]
    res = CliRunner().invoke(app, ["export", str(assembled.out), "--dest", str(dest), "--splits", "train:0.5"])
    assert res.exit_code == 2 and "name=fraction" in res.output
