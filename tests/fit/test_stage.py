"""The fit stage over `faces` rows: schema, segments of one track, failures as rows, the runner."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from flameqa.fit.synth import make_tracks
from flameqa.io.schema import conform, load_schema


def faces_rows(tracks, clip="clip0", segment_frames=60, track_ids=None):
    """Faces-table rows for synthetic tracks, each cut into segments of ``segment_frames``."""
    rows = []
    for k, tr in enumerate(tracks):
        tid = track_ids[k] if track_ids else k
        for seg, s in enumerate(range(0, tr.n_frames, segment_frames)):
            e = min(tr.n_frames, s + segment_frames)
            n = e - s
            rows.append({
                "clip_id": clip, "video_id": "vid0", "track_id": tid, "segment": seg, "fps": tr.fps,
                "image_width": tr.width, "image_height": tr.height,
                "frame_idx": list(range(s, e)), "detected": tr.detected[s:e].tolist(),
                "det_score": tr.det_score[s:e].tolist(),
                "landmarks": tr.landmarks[s:e].reshape(n, -1), "blendshapes": np.zeros((n, 52), np.float32),
                "transform": tr.transform[s:e].reshape(n, -1), "flags": [], "status": "ok", "error": None,
            })
    return rows


@pytest.fixture(scope="module")
def stage(demo_layer):
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import FitStage
    from flameqa.stages.base import StageContext

    return FitStage(FitConfig(device="cpu"), StageContext(out=None))  # type: ignore[arg-type]


def test_stage_output_conforms(stage, demo_fitter, tmp_path):
    tracks, _ = make_tracks(demo_fitter.model, 200, track_frames=100, seed=7)
    rows = faces_rows(tracks)
    rows.append({**rows[0], "track_id": 9, "segment": 0, "status": "failed", "error": "decode error", "frame_idx": [], "detected": [],
                 "det_score": [], "landmarks": np.zeros((0, 1434), np.float32), "blendshapes": np.zeros((0, 52), np.float32),
                 "transform": np.zeros((0, 16), np.float32)})
    faces = conform("faces", rows)
    out = stage(faces, {})["flame"]
    assert out.schema.equals(load_schema("flame").arrow, check_metadata=False)
    assert out.num_rows == faces.num_rows
    got = {(r["track_id"], r["segment"]): r for r in out.to_pylist()}
    for r in rows[:-1]:
        o = got[(r["track_id"], r["segment"])]
        t = len(r["frame_idx"])
        assert o["frame_idx"] == r["frame_idx"] and len(o["valid"]) == t and all(o["valid"])
        assert len(o["expression"]) == t and len(o["expression"][0]) == 100
        assert o["status"] == "ok" and o["model_id"] == "flameqa-demo-head" and o["iterations"] >= 1
        assert len(o["shape"]) == 100 and np.isfinite(o["fit_rmse_px"]).all() and max(o["nme"]) < 0.05
        assert json.loads(o["camera"])["model"] == "pinhole"
        assert o["jitter_ratio"] is not None
        np.testing.assert_array_equal(np.asarray(o["neck"]), 0)
        np.testing.assert_array_equal(np.asarray(o["expression"])[:, 50:], 0)  # zero-padded past n_expr
    # the segments of one track are fitted as that one track: one identity, no seam
    a, b = got[(0, 0)], got[(0, 1)]
    assert a["shape"] == b["shape"]
    whole = stage.fitter.fit([tracks[0]])[0]
    jaw = np.concatenate([np.asarray(a["jaw"]), np.asarray(b["jaw"])])
    np.testing.assert_allclose(jaw, whole.jaw, atol=1e-4)
    failed = got[(9, 0)]
    assert failed["status"] == "failed" and failed["error"] == "decode error" and failed["valid"] == []


def test_stage_through_the_runner(tmp_path, demo_fitter):
    from flameqa.config import load_config
    from flameqa.io import shards as sh
    from flameqa.runner import run_pipeline

    tracks, _ = make_tracks(demo_fitter.model, 120, track_frames=60, seed=11)
    sh.write_shard(tmp_path, "faces", 0, conform("faces", faces_rows(tracks[:1], clip="a")))
    sh.write_marker(tmp_path, "faces", 0, {"rows": 1})
    sh.write_shard(tmp_path, "faces", 1, conform("faces", faces_rows(tracks[1:], clip="b", segment_frames=25)))
    sh.write_marker(tmp_path, "faces", 1, {"rows": 3})
    cfg = load_config(overrides=["fit.device=cpu"])
    report = run_pipeline(cfg, tmp_path, stages=["fit"], show_progress=False)
    assert report.ok
    flame = sh.read_table(tmp_path, "flame")
    assert flame.num_rows == 4 and set(flame.column("status").to_pylist()) == {"ok"}
    assert sh.read_marker(tmp_path, "flame", 1)["extra"]["device"] == "cpu"
    # a rerun skips the completed shards
    again = run_pipeline(cfg, tmp_path, stages=["fit"], show_progress=False)
    assert all(r.skipped for s in again.stages for r in s.shards)


def test_inner_processes_split_a_batch_by_clip(tmp_path, demo_fitter):
    """With 2 inner processes a batch's clips are fitted in two pieces (one in a spawned helper):
    the same rows in the same order, equal to round-off (a track's fit does not depend on its batch)."""
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import FitStage
    from flameqa.stages.pool import split_groups
    from flameqa.stages.base import StageContext

    tracks, _ = make_tracks(demo_fitter.model, 180, track_frames=60, seed=3)
    rows = [r for k, tr in enumerate(tracks[:3]) for r in faces_rows([tr], clip=f"clip{k}", segment_frames=30)]
    faces = conform("faces", rows)
    assert [p.num_rows for p in split_groups(faces, "clip_id", 2)] == [4, 2]  # whole clips, near-equal
    assert [p.num_rows for p in split_groups(faces, "clip_id", 9)] == [2, 2, 2]
    cfg = FitConfig.model_validate({"device": "cpu", "smooth": {"preset": "tracking"}})
    out = []
    for processes in (1, 2):
        st = FitStage(cfg, StageContext(out=tmp_path, extra={"processes": processes}))
        try:
            out.append(st(faces, {})["flame"])
            frames = st.marker_extra()["frames"]
        finally:
            st.close()
        assert frames == 180  # the helper's frames are counted in the parent's marker
    a, b = (t.to_pylist() for t in out)
    assert [(r["clip_id"], r["segment"]) for r in a] == [(r["clip_id"], r["segment"]) for r in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x["jaw"]), np.asarray(y["jaw"]), atol=2e-4)
        np.testing.assert_allclose(np.asarray(x["shape"]), np.asarray(y["shape"]), atol=2e-4, rtol=1e-4)
