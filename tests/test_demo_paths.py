"""The demo's inputs with a relative OUT (as `make demo` passes it): every manifest uri must resolve.

Only the compose step runs (about 4 s); the full pipeline is covered by test_demo.py, which uses
absolute temp folders and so cannot see a uri doubled by the manifest's relative-path rule.
"""

from __future__ import annotations

from pathlib import Path

from flameqa.demo import make_inputs
from flameqa.ingest.manifest import read_manifest


def test_demo_manifest_uris_resolve_with_a_relative_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest, turns = make_inputs(Path("demo_out"))
    assert turns
    rows = read_manifest(str(manifest))
    assert [r["video_id"] for r in rows][0] == "conversation"
    for r in rows:
        assert r["error"] is None, r
        assert Path(r["uri"]).is_file(), f"manifest uri does not resolve: {r['uri']}"
    # the inputs folder stays valid when OUT is moved: the composed video is named beside the manifest
    moved = tmp_path / "moved"
    (tmp_path / "demo_out").rename(moved)
    for r in read_manifest(str(moved / "inputs" / "manifest.jsonl")):
        assert Path(r["uri"]).is_file(), r["uri"]
