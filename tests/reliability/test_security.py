"""Security: no unsafe deserialization or shell in the package, ids that cannot escape OUT, remote
URIs only through ``ingest.allowed_schemes``, and planted secrets that never reach a file or a log."""

from __future__ import annotations

import ast
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flameqa.security import contained, is_safe_id, redact_obj, redact_text, sanitize_id
from tests.conftest import ROOT
from tests.reliability.conftest import TALLY_NOTES
from tests.reliability.helpers import PLANTED_HF_TOKEN, PLANTED_LLM_KEY, PLANTED_SECRETS, base_env, pipeline_args, run_flameqa, seed_from

SCANNED = ("flameqa", "bench", "scripts")
"""Code that runs on users' machines: the package, the benchmarks and the set-up scripts."""

# ---------------------------------------------------------------------------------------------
# 1. a scan of the code for unsafe calls (AST: docstrings and comments do not count, aliases do)

PICKLE_LOADERS = {f"{m}.{f}" for m in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal") for f in ("load", "loads")}
PICKLE_LOADERS |= {"shelve.open", "pandas.read_pickle", "pd.read_pickle", "numpy.load", "np.load"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_calls(source: str, where: str = "<src>") -> list[str]:
    """Every call in ``source`` that could run code from data or through a shell."""
    found = []
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        raw = _dotted(node.func)
        head, _, rest = raw.partition(".")
        name = aliases.get(head, head) + (f".{rest}" if rest else "")
        kw = {k.arg: k.value for k in node.keywords}
        at = f"{where}:{node.lineno}: {raw}("
        if "shell" in kw and not _const(kw["shell"], False):
            found.append(f"{at}shell=...) (pass arguments as a list, no shell)")
        if name in ("numpy.load", "np.load"):
            if "allow_pickle" in kw and not _const(kw["allow_pickle"], False):
                found.append(f"{at}allow_pickle=...) (object arrays are pickles)")
        elif name in PICKLE_LOADERS:
            found.append(f"{at}) (use flameqa.flame.io.safe_pickle_load)")
        if name in ("pickle.Unpickler", "_pickle.Unpickler") and not where.endswith(os.path.join("flame", "io.py")):
            found.append(f"{at}) (only the restricted unpickler in flameqa/flame/io.py)")
        if name == "torch.load" and not _const(kw.get("weights_only"), True):
            found.append(f"{at}) without weights_only=True")
        if name in ("yaml.load", "yaml.load_all") and not (isinstance(kw.get("Loader"), (ast.Attribute, ast.Name)) and _dotted(kw["Loader"]).endswith("SafeLoader")):
            found.append(f"{at}) without Loader=SafeLoader (use yaml.safe_load)")
        if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.full_load_all"):
            found.append(f"{at})")
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
            found.append(f"{at}) (runs code from a string)")
        if name in ("os.system", "os.popen", "os.spawnl", "os.spawnlp", "subprocess.getoutput", "subprocess.getstatusoutput"):
            found.append(f"{at}) (goes through a shell)")
        if name.startswith("subprocess.") and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
            found.append(f"{at}\"...\") (a command string: pass a list)")
    return found


def test_scanner_catches_every_pattern():
    bad = """
import pickle, yaml, subprocess, os, torch
import numpy as np
from pickle import loads as L
pickle.load(f); L(b); np.load(p, allow_pickle=True); torch.load(p); torch.load(p, weights_only=False)
yaml.load(s); yaml.load(s, Loader=yaml.Loader); yaml.unsafe_load(s); eval("1"); exec("x=1")
subprocess.run("ls -l", shell=True); subprocess.check_output(f"ls {x}"); os.system("ls"); os.popen("ls")
pickle.Unpickler(f)
"""
    assert len(unsafe_calls(bad)) == 16, unsafe_calls(bad)
    good = """
import yaml, subprocess, torch
import numpy as np
yaml.safe_load(s); yaml.load(s, Loader=yaml.SafeLoader); np.load(p); np.load(p, allow_pickle=False)
torch.load(p, weights_only=True); subprocess.run(["ls", "-l"], check=True); model.eval()
"""
    assert unsafe_calls(good) == []


def test_package_has_no_unsafe_calls():
    files = [p for d in SCANNED for p in sorted((ROOT / d).rglob("*.py")) if "__pycache__" not in p.parts]
    assert len(files) > 50
    found = [f for p in files for f in unsafe_calls(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    TALLY_NOTES.append(f"unsafe-call scan: {len(files)} files under {'/, '.join(SCANNED)}/, {len(found)} findings")
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------------------------
# 2. ids can never name a path outside OUT


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_sanitized_ids_are_safe_and_stay_in_out(s):
    vid = sanitize_id(s)
    assert is_safe_id(vid)
    out = Path("/srv/run/OUT")
    for rel in (Path("media") / "audio" / f"{vid}.wav", Path("media") / "remote" / f"{vid}.mp4", Path(vid)):
        p = contained(out, rel)
        assert out in p.parents and p.parent == out / rel.parent


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_safe_ids_have_no_path_syntax(s):
    if is_safe_id(s):
        assert "/" not in s and "\\" not in s and "\x00" not in s and s not in (".", "..") and not s.startswith(".")
        assert len(s) <= 128


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "a", "b", "/", "~", "x/../..", "\\", "%2e%2e", "c:"]), max_size=8))
def test_contained_never_returns_a_path_outside(parts):
    root = Path("/srv/run/OUT")
    rel = "/".join(parts)
    try:
        p = contained(root, rel)
    except ValueError:
        return
    assert p == root or root in p.parents


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=160)), st.text(min_size=1, max_size=60)), min_size=1, max_size=8))
def test_manifest_ids_always_safe_and_unique(rows):
    import tempfile

    from flameqa.ingest.manifest import read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        m = Path(tmp) / "m.jsonl"
        m.write_text("".join(json.dumps({"uri": f"/videos/{name}.mp4", **({} if vid is None else {"video_id": vid})}) + "\n" for vid, name in rows))
        out = read_manifest(m)
    ids = [r["video_id"] for r in out]
    assert len(out) == len(rows) and len(set(ids)) == len(ids)
    assert all(is_safe_id(v) for v in ids), ids


def test_colliding_long_ids_stay_safe(tmp_path):
    from flameqa.ingest.manifest import read_manifest

    name = "x" * 200
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"uri": f"/a/{d}/{name}.mp4"}) + "\n" for d in "abc"))
    ids = [r["video_id"] for r in read_manifest(m)]
    assert len(set(ids)) == 3 and all(is_safe_id(v) for v in ids), ids


# ---------------------------------------------------------------------------------------------
# 3. remote URIs only through ingest.allowed_schemes


def test_remote_uris_only_through_allowed_schemes(tmp_path, video_factory):
    import fsspec

    from flameqa.config import load_config
    from flameqa.io.shards import read_table
    from flameqa.runner import run_pipeline

    src = video_factory("remote.mp4", seconds=1.2)
    with fsspec.open("memory://bucket/clips/remote.mp4", "wb") as f:
        f.write(src.read_bytes())
    m = tmp_path / "m.jsonl"
    uris = {
        "mem": "memory://bucket/clips/remote.mp4",
        "https": "https://example.com/a.mp4",
        "upper": "HTTP://example.com/b.mp4",
        "s3": "s3://bucket/c.mp4",
        "ftp": "ftp://example.com/d.mp4",
        "traverse": "memory://bucket/clips/../../../../etc/passwd.mp4",
        "local": "file://" + str(src),
    }
    m.write_text("".join(json.dumps({"uri": u, "video_id": k}) + "\n" for k, u in uris.items()))

    def ingest(out, *over):
        cfg = load_config(None, ["ingest.min_clip_s=0.2", *over])
        assert run_pipeline(cfg, out, inputs=str(m), stages=["ingest"], show_progress=False).ok
        return {v["video_id"]: v for v in read_table(out, "videos").to_pylist()}

    v = ingest(tmp_path / "default")
    assert v["local"]["status"] == "ok"
    for k in ("mem", "https", "upper", "s3", "ftp", "traverse"):
        assert v[k]["status"] == "failed" and "is not allowed" in v[k]["error"] and "allowed_schemes" in v[k]["error"], v[k]
    assert not (tmp_path / "default" / "media" / "remote").exists(), "nothing fetched without an allowed scheme"

    out = tmp_path / "allowed"
    v = ingest(out, "ingest.allowed_schemes=[file, memory]")
    assert v["mem"]["status"] == "ok", v["mem"]
    fetched = out / "media" / "remote" / "mem.mp4"
    assert fetched.read_bytes() == src.read_bytes()
    assert v["traverse"]["status"] == "failed"  # not found in the memory store; named by id, never by path
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    for k in ("https", "upper", "s3", "ftp"):
        assert v[k]["status"] == "failed" and "not allowed" in v[k]["error"]


# ---------------------------------------------------------------------------------------------
# 4. planted secrets never reach a file or a log


def test_redaction_helpers():
    import logging

    from flameqa.security import RedactingFilter

    assert PLANTED_HF_TOKEN not in redact_text(f"token={PLANTED_HF_TOKEN} auth: Bearer {PLANTED_LLM_KEY}")
    cfg = {"assemble": {"generator": {"api_key": "anything-at-all", "api_key_env": "FLAMEQA_LLM_API_KEY"}}, "hub": {"token": "x1"}, "u": f"https://h/?t={PLANTED_HF_TOKEN}"}
    red = redact_obj(cfg)
    assert red["assemble"]["generator"]["api_key"] == "***" and red["hub"]["token"] == "***"
    assert red["assemble"]["generator"]["api_key_env"] == "FLAMEQA_LLM_API_KEY" and PLANTED_HF_TOKEN not in red["u"]
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", (PLANTED_LLM_KEY,), None)
    try:
        raise RuntimeError(f"GET https://hub/?token={PLANTED_HF_TOKEN}")
    except RuntimeError:
        import sys

        rec.exc_info = sys.exc_info()
    RedactingFilter().filter(rec)
    text = logging.Formatter().format(rec)
    assert "Traceback" in text and not any(s in text for s in PLANTED_SECRETS), text


class _FakeLLM(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server API
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        _FakeLLM.seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"choices": [{"message": {"content": "What happened to you today?"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_llm():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLLM)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _FakeLLM.seen = []
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def _files_with_secrets(root: Path) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            hits += [f"{p}: {s}" for s in PLANTED_SECRETS if s.encode() in data]
    return hits


def test_planted_tokens_never_written(clean_run, fake_llm, tmp_path):
    """HF_TOKEN in the environment of every run, an LLM key in the assemble generator config: the key
    is used (the endpoint sees it), yet no output file, saved config, dataset card or log holds either."""
    work = seed_from(clean_run.out, tmp_path / "work", ["assemble"])
    env = base_env(FLAMEQA_LOG="DEBUG")
    r = run_flameqa(
        pipeline_args(
            clean_run.manifest, work,
            f"assemble.generator.url={fake_llm}", "assemble.generator.model=fake-llm",
            f"assemble.generator.api_key={PLANTED_LLM_KEY}", "assemble.generator.retries=0",
        ),
        env=env,
    )
    assert r.returncode == 0, r.describe()
    assert f"Bearer {PLANTED_LLM_KEY}" in _FakeLLM.seen, "the planted key must actually be used"
    export = tmp_path / "export"
    e = run_flameqa(["export", str(work), "--dest", str(export)], env=env)
    assert e.returncode == 0, e.describe()
    assert (export / "README.md").is_file() and list((export / "data").glob("*.parquet"))
    saved = (work / "config.yaml").read_text()
    assert re.search(r"api_key: '?\*+'?", saved), saved
    hits = _files_with_secrets(clean_run.out) + _files_with_secrets(work) + _files_with_secrets(export)
    for name, text in (("clean run log", clean_run.log), ("LLM run log", r.output), ("export log", e.output)):
        hits += [f"{name}: {s}" for s in PLANTED_SECRETS if s in text]
    n_files = sum(1 for d in (clean_run.out, work, export) for p in d.rglob("*") if p.is_file())
    TALLY_NOTES.append(f"planted secrets: {n_files} output files and 3 captured logs grepped, {len(hits)} hits")
    assert not hits, "\n".join(hits)
