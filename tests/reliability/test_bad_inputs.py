"""The bad-input corpus: every kind gives a clear error or a failed row with a reason, the run
completes, nothing is lost, and ``flameqa inspect`` shows the tally.

Media, path and manifest-row kinds go through one ``flameqa run pipelines/demo.yaml`` (all six
stages; ``ingest.min_clip_s=0`` so even the one-frame clip reaches speech, faces and the fit).
Whole-manifest, config and model-file kinds must fail before any work with a message naming the
problem (model files: the fit stage refuses to start, earlier tables stay as they were).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from flameqa.io import shards as sh
from tests.conftest import ROOT
from tests.reliability.conftest import TALLY_NOTES, Corpus, bad_corpus_cli, tally
from tests.reliability.helpers import code_root, compare_outputs, pipeline_args, run_flameqa


def _check_row(kind, v: dict) -> str | None:
    """Why row ``v`` does not meet ``kind``'s expectation (None: it does)."""
    err, flags, st = v.get("error") or "", v.get("flags") or [], v["status"]
    if kind.expect == "ok":
        if st != "ok":
            return f"status {st!r} ({err})"
        if kind.reason and not any(kind.reason in f for f in flags):
            return f"flags {flags} lack {kind.reason!r}"
    elif kind.expect in ("failed", "duplicate"):
        if st != kind.expect:
            return f"status {st!r}, expected {kind.expect!r}"
        if kind.reason not in err:
            return f"error {err!r} does not say {kind.reason!r}"
    elif kind.expect == "failed_or_flagged":
        if not (st == "failed" and err) and "truncated" not in flags:
            return f"status {st!r}, flags {flags}: neither failed with a reason nor flagged"
    elif kind.expect == "any":
        if st not in ("ok", "failed") or (st == "failed" and not err):
            return f"status {st!r} without a reason"
    return None


def test_bad_media_and_manifest_rows(bad_corpus: Corpus, tmp_path):
    from flameqa.ingest.manifest import read_manifest

    c = bad_corpus
    inputs = [c.manifest, *c.extra_inputs]
    manifest = read_manifest(inputs)
    assert len(manifest) == len(c.row_kinds)
    ids: dict[str, list[str]] = {}
    for kind, r in zip(c.row_kinds, manifest):
        ids.setdefault(kind, []).append(r["video_id"])

    out = tmp_path / "out"
    r = bad_corpus_cli(c, out, "ingest.min_clip_s=0", "ingest.videos_per_shard=4")
    crashed = r.returncode != 0 or "Traceback" in r.output
    failed_stage_rows = r.output.count("group failed:")
    by_kind = {k.kind: k for k in c.kinds}
    kinds = [k for k in c.kinds if k.rows and k.area != "control"]

    videos = sh.read_table(out, "videos").to_pylist()
    clips = sh.read_table(out, "clips").to_pylist()
    vid_rows = Counter(v["video_id"] for v in videos)
    lost = sum(1 for kind, r in zip(c.row_kinds, manifest) if vid_rows[r["video_id"]] == 0)
    dup = sum(n - 1 for n in vid_rows.values() if n > 1)
    # every clip reaches speech and faces, every face-track segment gets its fit row
    speech_clips = {x["clip_id"] for x in sh.read_table(out, "speech", columns=["clip_id"]).to_pylist()}
    faces = sh.read_table(out, "faces", columns=["clip_id", "track_id", "segment"]).to_pylist()
    flame = sh.read_table(out, "flame", columns=["clip_id", "track_id", "segment"]).to_pylist()
    lost += sum(1 for x in clips if x["clip_id"] not in speech_clips)
    lost += sum(1 for x in clips if x["clip_id"] not in {f["clip_id"] for f in faces})
    key = lambda x: (x["clip_id"], x["track_id"], x["segment"])  # noqa: E731
    lost += sum((Counter(map(key, faces)) - Counter(map(key, flame))).values())

    misses = []
    by_id = {v["video_id"]: v for v in videos}
    for kind, vids in ids.items():
        for vid in vids:
            if vid in by_id and (why := _check_row(by_kind[kind], by_id[vid])):
                misses.append(f"{kind} ({vid}): {why}")
    tally(**{"bad-input kinds tried": len(kinds), "bad inputs handled": len(kinds) - len({m.split(' ')[0] for m in misses}), "crashes": int(crashed), "rows lost": lost, "duplicate rows": dup})
    TALLY_NOTES.append(f"bad media/manifest rows: {len(kinds)} kinds, {len(manifest)} manifest rows, {failed_stage_rows} rows failed inside a stage (kept with their error)")

    assert not crashed, r.describe()
    assert lost == 0 and dup == 0, (lost, dup)
    assert not misses, "\n".join(misses)
    # the control input and every well-formed one went all the way through
    assert by_id["control_good"]["status"] == "ok" and any(x["clip_id"].startswith("control_good.") for x in clips)
    # nothing ran a shell or wrote outside OUT
    assert not list(ROOT.glob("PWNED*")) and not list(c.root.rglob("PWNED*")) and not (Path.cwd() / "PWNED_SHELL").exists()
    audio = {p.name for p in (out / "media" / "audio").iterdir()}
    assert all(p.endswith(".wav") and not p.startswith(".") for p in audio), audio

    # the tally is in `flameqa inspect`
    ins = run_flameqa(["inspect", str(out)])
    assert ins.returncode == 0, ins.describe()
    for reason in ("zero-byte file", "not a regular file", "frames per second", "invalid video_id", "no frame size", "has no 'uri'", "not allowed", "audio-only"):
        assert reason in ins.stdout, (reason, ins.stdout)
    assert "flags:" in ins.stdout and "vfr=" in ins.stdout and "rotated_90=" in ins.stdout
    js = run_flameqa(["inspect", str(out), "--json"])
    import json

    summary = json.loads(js.stdout)
    assert summary["videos"]["rows"] == len(manifest)
    assert summary["videos"]["status"]["failed"] >= sum(1 for k in kinds if k.expect == "failed")


def test_unreadable_manifests_fail_before_work(bad_corpus: Corpus, tmp_path):
    from flameqa.ingest.manifest import ManifestError, read_manifest

    kinds = bad_corpus.by_area("manifest_file")
    handled = 0
    for k in kinds:
        if k.expect == "error":
            with pytest.raises(ManifestError, match=k.reason):
                read_manifest(k.path)
        elif k.expect == "empty":
            assert read_manifest(k.path) == []
        else:
            (row,) = read_manifest(k.path)
            assert row["error"] is None  # a video uri; the ingest stage says why it cannot open it
        handled += 1
    # through the CLI: one line, exit 2, no traceback, no output folder
    r = run_flameqa(["ingest", "--input", str(kinds[1].path), "--out", str(tmp_path / "o")])
    crashed = r.returncode != 2 or "Traceback" in r.output
    tally(**{"bad-input kinds tried": len(kinds), "bad inputs handled": handled, "crashes": int(crashed)})
    assert not crashed and "cannot be read" in r.stderr, r.describe()
    assert not (tmp_path / "o" / "videos").exists()


def test_bad_configs_fail_before_work(bad_corpus: Corpus, tmp_path):
    from flameqa.config import ConfigError, load_config

    kinds = bad_corpus.by_area("config")
    for k in kinds:
        with pytest.raises(ConfigError) as e:
            load_config(k.path)
        assert k.reason in str(e.value), (k.kind, str(e.value))
    unknown = next(k for k in kinds if k.kind == "config_unknown_keys")
    r = run_flameqa(pipeline_args(bad_corpus.manifest, tmp_path / "o", pipeline=unknown.path))
    crashed = r.returncode != 2 or "Traceback" in r.output
    tally(**{"bad-input kinds tried": len(kinds), "bad inputs handled": len(kinds), "crashes": int(crashed)})
    assert not crashed, r.describe()
    assert "fit.devise" in r.stderr and "'device'" in r.stderr and "speech.asr_modle" in r.stderr
    assert not (tmp_path / "o").exists(), "a bad config must fail before any work"
    assert not list(ROOT.glob("PWNED*")) and not (Path.cwd() / "PWNED_YAML").exists()


def test_bad_model_files_refused(clean_run, bad_corpus: Corpus, tmp_path):
    """Wrong shapes, truncated/malicious pickles, object arrays: the fit stage refuses to start with
    a message naming the file; nothing runs, nothing is written, earlier tables stay intact."""
    from flameqa.config import load_config
    from flameqa.runner import run_pipeline

    work = tmp_path / "work"
    shutil.copytree(clean_run.out, work)
    kinds = bad_corpus.by_area("model")
    handled = 0
    for k in kinds:
        cfg = load_config(code_root() / "pipelines" / "demo.yaml", [f"fit.model={k.path}", "ingest.videos_per_shard=1"])
        # OUT already holds flame shards (made with another model), so a missing file is only a
        # warning up front (runner.preflight) and fails the stage's start like the others
        rep = run_pipeline(cfg, work, stages=["fit", "assemble"], show_progress=False)
        st = rep.stages[0]
        assert [s.stage for s in rep.stages] == ["fit"], "stages after a stage that cannot start do not run"
        assert st.start_error and k.reason in st.start_error and str(k.path.name) in st.start_error, (k.kind, st.start_error)
        assert "could not start" in st.start_error and not rep.ok
        handled += 1
    assert not (bad_corpus.root / "model" / "PWNED").exists(), "the malicious pickle ran code"
    c = compare_outputs(clean_run.out, work)
    assert c.equal, c.problems  # nothing was written or removed
    # through the CLI: exit 1, one clear line, no traceback
    mal = next(k for k in kinds if k.kind == "model_malicious_pickle")
    r = run_flameqa(pipeline_args(clean_run.manifest, work, f"fit.model={mal.path}"))
    crashed = r.returncode != 1 or "Traceback" in r.output
    tally(**{"bad-input kinds tried": len(kinds), "bad inputs handled": handled, "crashes": int(crashed)})
    assert not crashed and "could not start" in r.stderr and "refusing" in r.stderr, r.describe()
    assert not (bad_corpus.root / "model" / "PWNED").exists()


def test_corpus_has_25_kinds(bad_corpus: Corpus):
    areas = Counter(k.area for k in bad_corpus.kinds if k.area != "control")
    assert sum(areas.values()) >= 25 and {"video", "audio", "manifest", "config", "model"} <= set(areas), areas
    assert os.path.isdir(bad_corpus.root) and bad_corpus.root.name == "bad"
