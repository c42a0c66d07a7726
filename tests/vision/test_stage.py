"""The faces stage through the runner, on real GRID clips and on bad videos made from them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from flameqa.io import shards as sh
from flameqa.io.schema import column_to_numpy
from flameqa.runner import run_pipeline

from .conftest import clip_row, faces_config, grid_clips, write_table


def faces_table(out):
    return sh.read_table(out, "faces")


def test_landmarks_on_every_grid_frame_two_workers_and_resume(tmp_path, bundle):
    clips = grid_clips()
    rows = [clip_row(f"{p.stem}.c000", p) for p in clips]
    write_table(tmp_path, "clips", [rows[:3], rows[3:]])  # uneven shards
    cfg = faces_config(**{"runner.workers": 2, "runner.batch_groups": 2})
    report = run_pipeline(cfg, tmp_path, stages=["faces"], show_progress=False)
    assert report.ok, [s.error for st in report.stages for s in st.shards]
    t = faces_table(tmp_path)
    by_clip = {}
    for i, r in enumerate(t.select(["clip_id", "track_id", "segment", "status", "flags", "image_width", "image_height"]).to_pylist()):
        by_clip.setdefault(r["clip_id"], []).append((i, r))
    assert sorted(by_clip) == sorted(r["clip_id"] for r in rows)
    for clip_id, items in by_clip.items():
        assert len(items) == 1, f"{clip_id}: one face, one track, one segment expected, got {[r for _, r in items]}"
        i, r = items[0]
        assert (r["track_id"], r["segment"], r["status"], r["flags"]) == (0, 0, "ok", [])
        assert (r["image_width"], r["image_height"]) == (360, 288)
        frame_idx = t.column("frame_idx")[i].as_py()
        assert frame_idx == list(range(75)), f"{clip_id}: frames {frame_idx[:3]}…{frame_idx[-3:]}"
        assert all(t.column("detected")[i].as_py()), f"{clip_id}: a frame without landmarks"
        lm = column_to_numpy(t.column("landmarks"), i).reshape(75, 478, 3)
        bs = column_to_numpy(t.column("blendshapes"), i)
        tf = column_to_numpy(t.column("transform"), i).reshape(75, 4, 4)
        score = np.asarray(t.column("det_score")[i].as_py())
        assert np.isfinite(lm).all() and np.isfinite(tf).all()
        assert (lm[..., 0] > 0).all() and (lm[..., 0] < 360).all() and (lm[..., 1] > 0).all() and (lm[..., 1] < 288).all()
        # z: relative depth on the x scale (pixels): about the size of the face, not normalised units
        assert 10 < np.ptp(lm[0, :, 2]) < 360
        assert bs.shape == (75, 52) and (bs >= 0).all() and (bs <= 1).all()
        assert (score > 0.5).all()
        mo = np.asarray(t.column("mouth_open")[i].as_py())
        assert mo.shape == (75,) and np.ptp(mo) > 0.05, "GRID speakers open and close their mouths"
    # resume: a second run skips every shard
    again = run_pipeline(faces_config(), tmp_path, stages=["faces"], show_progress=False)
    assert all(s.skipped for s in again.stages[0].shards)


UHD_X0 = 570


def _black(h, w, n):
    return np.zeros((n, h, w, 3), np.uint8)


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory, grid_frames):
    """Bad inputs composed from GRID frames; returns {name: clips row}."""
    import cv2

    from flameqa.vision.synth import write_video

    d = tmp_path_factory.mktemp("bad")
    g = grid_frames
    a = g["bbaf2n"].frames
    h, w = a.shape[1:3]
    vids = {}

    def put(name, frames, **kw):
        path = write_video(d / f"{name}.mp4", frames, preset="ultrafast", **kw)
        vids[name] = path

    # a face, 6 black frames, the face again: one track with a marked gap
    put("gap", np.concatenate([a[:30], _black(h, w, 6), a[36:60]]))
    put("black", _black(h, w, 20))
    # no face: a moving gradient
    yy, xx = np.mgrid[0:h, 0:w]
    put("noface", np.stack([np.stack([(xx + 5 * i) % 256, yy % 256, np.full_like(xx, 90)], -1).astype(np.uint8) for i in range(20)]))
    # four speakers in a 2x2 grid
    names = sorted(g)[:4]
    top = np.concatenate([g[names[0]].frames[:25], g[names[1]].frames[:25]], axis=2)
    bottom = np.concatenate([g[names[2]].frames[:25], g[names[3]].frames[:25]], axis=2)
    put("four", np.concatenate([top, bottom], axis=1))
    # 4K: the GRID frame scaled 7.5x to the full height of a 3840x2160 canvas
    big = np.zeros((8, 2160, 3840, 3), np.uint8)
    for i in range(8):
        big[i, :, UHD_X0 : UHD_X0 + 2700] = cv2.resize(a[i], (2700, 2160), interpolation=cv2.INTER_LINEAR)
    put("uhd", big)
    # a phone video: frames stored turned clockwise, display rotation 90 in the stream
    put("rotated", np.stack([np.rot90(f, -1) for f in a[:20]]), rotation=90)
    # a tiny face: 36 px wide in a 640x480 frame
    tiny = np.full((15, 480, 640, 3), 60, np.uint8)
    for i in range(15):
        tiny[i, 200:229, 300:336] = cv2.resize(a[i], (36, 29), interpolation=cv2.INTER_AREA)
    put("tiny", tiny)
    # and the same face at native size for reference
    put("native", a[:20])
    rows = {k: clip_row(f"{k}.c000", p) for k, p in vids.items()}
    rows["missing"] = dict(rows["native"], clip_id="missing.c000", video_id="missing", path=str(d / "nope.mp4"))
    return rows


@pytest.fixture(scope="module")
def bad_out(tmp_path_factory, bad_videos, bundle):
    out = tmp_path_factory.mktemp("bad_out")
    rows = list(bad_videos.values())
    write_table(out, "clips", [rows])
    report = run_pipeline(faces_config(**{"runner.batch_groups": 3}), out, stages=["faces"], show_progress=False)
    assert report.ok, [s.error for st in report.stages for s in st.shards]
    t = faces_table(out)
    res: dict = {}
    for i, r in enumerate(t.select(["clip_id", "track_id", "status", "flags", "error", "image_width", "image_height"]).to_pylist()):
        r["i"] = i
        res.setdefault(r["clip_id"].split(".")[0], []).append(r)
    return t, res


def _lm(t, i):
    return column_to_numpy(t.column("landmarks"), i).reshape(-1, 478, 3)


def test_gap_frames_are_marked(bad_out):
    t, res = bad_out
    (r,) = res["gap"]
    det = np.asarray(t.column("detected")[r["i"]].as_py())
    assert r["status"] == "ok" and {"gaps", "black_frames"} <= set(r["flags"])
    assert len(det) == 60 and not det[30:36].any() and det[:30].all() and det[36:].all()
    assert np.isnan(_lm(t, r["i"])[30:36]).all()


def test_no_face_and_black_clips_get_one_status_row(bad_out):
    t, res = bad_out
    for name, flag in (("black", "all_black"), ("noface", None)):
        (r,) = res[name]
        assert r["status"] == "no_face" and r["track_id"] == -1 and r["error"] is None
        assert t.column("frame_idx")[r["i"]].as_py() == []
        if flag:
            assert flag in r["flags"]


def test_four_faces_four_tracks_flagged(bad_out):
    t, res = bad_out
    rows = res["four"]
    assert sorted(r["track_id"] for r in rows) == [0, 1, 2, 3]
    assert all("many_faces" in r["flags"] and r["status"] == "ok" for r in rows)
    centres = sorted(tuple(int(v) for v in np.nanmean(_lm(t, r["i"])[:, :, :2], axis=(0, 1)) // [360, 288]) for r in rows)
    assert centres == [(0, 0), (0, 1), (1, 0), (1, 1)], "one track per quadrant"


def test_4k_is_downscaled_and_mapped_back(bad_out):
    t, res = bad_out
    (r,) = res["uhd"]
    (ref,) = res["native"]
    assert "downscaled" in r["flags"] and (r["image_width"], r["image_height"]) == (3840, 2160)
    big = _lm(t, r["i"])[:8]
    small = _lm(t, ref["i"])[:8]
    assert big.shape[0] == 8 and np.isfinite(big).all()
    mapped = small[..., :2] * 7.5 + [UHD_X0, 0]  # where the native landmarks land in the 4K canvas
    err = np.linalg.norm(big[..., :2] - mapped, axis=-1).mean() / (7.5 * 360)
    assert err < 0.01, f"4K landmarks off by {err:.3%} of the frame width"
    assert np.ptp(big[0, :, 2]) == pytest.approx(7.5 * np.ptp(small[0, :, 2]), rel=0.15), "z must scale with the image"


def test_rotated_phone_video_is_landmarked_upright(bad_out):
    t, res = bad_out
    (r,) = res["rotated"]
    (ref,) = res["native"]
    assert "rotated" in r["flags"] and (r["image_width"], r["image_height"]) == (360, 288)
    rot, nat = _lm(t, r["i"]), _lm(t, ref["i"])[:20]
    assert (rot[:, 33, 1] < rot[:, 13, 1]).all(), "eyes above the mouth"
    assert np.linalg.norm(rot[..., :2] - nat[..., :2], axis=-1).mean() < 3.0


def test_tiny_face_is_not_passed_off_as_usable(bad_out):
    _, res = bad_out
    rows = res["tiny"]
    assert all(r["status"] == "no_face" or "small_face" in r["flags"] for r in rows), rows


def test_flags_are_documented(bad_out):
    from flameqa.io.schema import load_schema
    from flameqa.vision.stage import FLAGS

    _, res = bad_out
    seen = {f for rows in res.values() for r in rows for f in r["flags"]}
    assert seen <= set(FLAGS), seen - set(FLAGS)
    doc = load_schema("faces").column("flags").doc
    assert all(f in doc for f in FLAGS)


def test_unreadable_clip_is_a_failed_row(bad_out):
    _, res = bad_out
    (r,) = res["missing"]
    assert r["status"] == "failed" and "nope.mp4" in r["error"]


def test_profile_and_small_flags(bundle, tmp_path):
    from flameqa.stages.base import StageContext
    from flameqa.vision.config import FacesConfig
    from flameqa.vision.pose import rotation_matrix
    from flameqa.vision.stage import FacesStage
    from flameqa.vision.tracks import TrackSegment

    T = 10
    lm = np.zeros((T, 478, 3), np.float32)
    seg = TrackSegment(
        0, 0, np.arange(T, dtype=np.int32), np.ones(T, bool), np.ones(T, np.float32), lm, np.zeros((T, 52), np.float32),
        np.stack([rotation_matrix(yaw=70)] * T).astype(np.float32), np.tile(np.array([0, 0, 40, 40], np.float32), (T, 1)),
        np.ones(T, np.int16),
    )
    stage = FacesStage(FacesConfig(), StageContext(out=tmp_path))
    try:
        row = stage._segment_row({}, seg, [], [])
    finally:
        stage.close()
    assert {"profile", "small_face"} <= set(row["flags"]) and "many_faces" not in row["flags"]


def test_spooled_output_equals_in_memory(tmp_path, bundle):
    from flameqa.stages.base import StageContext
    from flameqa.vision.config import FacesConfig
    from flameqa.vision.stage import FacesStage

    clip = clip_row("g.c000", grid_clips()[0], end_s=1.0)
    res = []
    for spool in (256, 0):
        stage = FacesStage(FacesConfig(spool_mb=spool, max_segment_frames=10), StageContext(out=tmp_path))
        try:
            res.append(stage.process_clip(clip))
        finally:
            stage.close()
    assert res[0].num_rows == 3 and res[0].equals(res[1])
    assert not list((tmp_path / "tmp").glob("*")), "spool files are unlinked once mapped"


@pytest.mark.parametrize("name", ["rotated", "native"])
def test_yuv_decode_matches_the_reader(bad_videos, name):
    from flameqa.io.media import iter_frames
    from flameqa.vision.stage import decode_frames

    c = bad_videos[name]
    stored = (c["height"], c["width"]) if c["rotation"] in (90, 270) else (c["width"], c["height"])
    ours = [f for _, _, f in decode_frames(c["path"], 25.0, 0.0, None, c["rotation"], None, stored)]
    ref = [f for _, _, f in iter_frames(c["path"], rotation=c["rotation"])]
    assert len(ours) == len(ref) and ours[0].shape == ref[0].shape == (288, 360, 3)
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(ours, ref)) < 3


def test_clips_in_parallel_processes_give_the_same_rows(tmp_path, bundle):
    """A batch's clips spread over this process and a spawned helper: same rows, same order, same
    counters as one process; rows over spool_mb come back through a mapped file, none left over."""
    from flameqa.stages.base import StageContext
    from flameqa.vision.config import FacesConfig
    from flameqa.vision.stage import FacesStage

    clips = [clip_row(f"g.c{i:03d}", p, end_s=1.0) for i, p in enumerate(grid_clips()[:3])]
    batch = pa.Table.from_pylist(clips)
    res, stats = [], []
    for processes in (1, 2):
        stage = FacesStage(FacesConfig(spool_mb=0), StageContext(out=tmp_path, extra={"processes": processes}))
        try:
            res.append(stage(batch, {})["faces"])
            stats.append(stage.marker_extra())
        finally:
            stage.close()
    assert stage.inner._pool is None  # closed with the stage
    assert res[0].column("clip_id").to_pylist() == [c["clip_id"] for c in clips]
    assert res[0].equals(res[1])
    for s in stats:
        s.pop("seconds"), s.pop("fps")
    assert stats[0] == stats[1] and stats[0]["frames"] == 75
    assert not list((tmp_path / "tmp").glob("*"))


def test_helpers_exit_when_the_run_is_killed(tmp_path, bundle):
    """SIGKILL of a run whose faces stage has a helper pool: the helpers exit too (no orphan
    holding a FaceLandmarker in memory for ever)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    clips = [clip_row(f"g.c{i:03d}", str(p), end_s=0.4) for i, p in enumerate(grid_clips()[:2])]
    script = f"""
import os, sys, time, pyarrow as pa
from pathlib import Path
from flameqa.stages.base import StageContext
from flameqa.vision.config import FacesConfig
from flameqa.vision.stage import FacesStage
stage = FacesStage(FacesConfig(), StageContext(out=Path({str(tmp_path)!r}), extra={{"processes": 2}}))
stage(pa.Table.from_pylist({clips!r}), {{}})
print(" ".join(str(p) for p in stage.inner._pool._processes), flush=True)
time.sleep(600)
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        helpers = [int(x) for x in p.stdout.readline().split()]
        assert helpers and all(psutil.pid_exists(h) for h in helpers)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(psutil.pid_exists(h) and psutil.Process(h).status() != psutil.STATUS_ZOMBIE for h in helpers):
            time.sleep(0.2)
        assert not any(psutil.pid_exists(h) and psutil.Process(h).status() != psutil.STATUS_ZOMBIE for h in helpers)
    finally:
        p.kill()


def test_clips_of_one_video_decode_in_one_pass_with_the_same_rows(tmp_path, bundle, monkeypatch):
    """A run of consecutive clips is decoded once (one seek), and gives the rows each clip gives alone."""
    import flameqa.io.media as media
    from flameqa.bench.pipeline import concat_copies
    from flameqa.stages.base import StageContext
    from flameqa.vision.stage import FacesStage, clip_runs

    video = concat_copies(grid_clips()[0], tmp_path / "three.mp4", 3)  # 9 s, 25 fps
    cuts = [0.0, 1.3, 3.0, 4.52, 6.0, 9.0]  # windows that do not start on the frame grid too
    rows = [clip_row(f"v.c{k:03d}", video, a, b) for k, (a, b) in enumerate(zip(cuts, cuts[1:]))]
    rows.insert(2, clip_row("v.bad", video, 3.0, 3.0, status="failed"))  # not ok: stands alone
    assert [[r["clip_id"] for r in g] for g in clip_runs(rows)] == [["v.c000", "v.c001"], ["v.bad"], ["v.c002", "v.c003", "v.c004"]]
    batch = pa.Table.from_pylist(rows)
    cfg = faces_config().faces
    shared = FacesStage(cfg, StageContext(out=tmp_path))
    alone = FacesStage(cfg, StageContext(out=tmp_path))
    passes = []
    real = media.iter_windows
    monkeypatch.setattr(media, "iter_windows", lambda path, windows, *a, **k: passes.append(len(windows)) or real(path, windows, *a, **k))
    try:
        got = shared(batch, {})["faces"]
        assert sorted(passes) == [2, 3]  # two decoding passes for five clips (the longest run first)
        want = pa.concat_tables([alone.process_clip(r) for r in rows])
    finally:
        shared.close()
        alone.close()
    assert got.column("clip_id").to_pylist() == want.column("clip_id").to_pylist()
    assert got.column("status").to_pylist() == ["ok", "ok", "skipped", "ok", "ok", "ok"]
    assert got.equals(want)
    # every target time of every window: ⌈(end − start) × 25⌉ frames each
    import math

    assert sum(len(f) for f in got.column("frame_idx").to_pylist()) == sum(math.ceil(round((b - a) * 25, 6)) for a, b in zip(cuts, cuts[1:]))


def test_long_clips_split_into_pieces_on_their_frame_grid():
    from flameqa.vision.stage import split_pieces

    clip = dict(clip_id="v.c000", start_s=10.0, end_s=210.0, fps=25.0, status="ok")
    pieces = split_pieces(clip, 60.0)
    assert len(pieces) == 3 and {p["clip_id"] for p in pieces} == {"v.c000"}
    assert [p["_frame0"] for p in pieces] == [0, 1667, 3334] and pieces[0]["_piece_frames"] == 1667
    assert pieces[0]["start_s"] == 10.0 and pieces[-1]["end_s"] == 210.0
    assert all(abs(a["end_s"] - b["start_s"]) < 1e-9 for a, b in zip(pieces, pieces[1:]))
    assert all(p["_clip_start_s"] == 10.0 for p in pieces)
    for c in (dict(clip, end_s=99.0), dict(clip, end_s=None), dict(clip, status="failed")):
        assert split_pieces(c, 60.0) == [c]  # under 1.5 pieces, open end, not ok: whole
    assert split_pieces(clip, 0.0) == [clip]


def _piece_row(track, seg, frames, box, status="ok", flags=()):
    n = len(frames)
    return dict(status=status, track_id=track, segment=seg, frame_idx=list(frames), detected=[True] * n,
                bbox=[list(box)] * n, flags=list(flags))


def test_tracks_crossing_a_piece_boundary_are_joined():
    from flameqa.vision.stage import join_pieces

    a, b = (100, 100, 200, 220), (400, 100, 500, 220)
    rows = [
        _piece_row(0, 0, range(0, 100), a),  # piece 0: face A to the end
        _piece_row(1, 0, range(10, 40), b),  # face B leaves long before the boundary
        _piece_row(0, 0, range(100, 150), (104, 100, 204, 220)),  # piece 1: A again (its tracker's id 0) ...
        _piece_row(0, 1, range(150, 200), a),  # ... over two segments
        _piece_row(1, 0, range(160, 200), b),  # B comes back: a new track, as in one pass
    ]
    got = join_pieces(rows, 100, max_gap=25, min_iou=0.2)
    assert [(r["track_id"], r["segment"], r["frame_idx"][0]) for r in got] == [(0, 0, 0), (1, 0, 10), (0, 1, 100), (0, 2, 150), (2, 0, 160)]
    # a piece that failed fails the clip; pieces without faces leave one row only when no piece has faces
    failed = dict(_piece_row(-1, 0, [], a, status="failed"), error="decode error")
    assert join_pieces(rows[:2] + [failed], 100, 25, 0.2) == [failed]
    black = _piece_row(-1, 0, [], a, status="no_face", flags=["all_black"])
    assert join_pieces(rows[:1] + [black], 100, 25, 0.2) == rows[:1]
    assert join_pieces([black, _piece_row(-1, 0, [], a, status="no_face", flags=["short_tracks"])], 100, 25, 0.2) == [
        dict(black, flags=["black_frames", "short_tracks"])]
    # a face gone 20 frames before the boundary and one 20 frames after it, same place: 40 > max_gap
    # frames apart, two tracks, as in one pass
    apart = [_piece_row(0, 0, range(0, 80), a), _piece_row(0, 0, range(120, 200), a)]
    assert [r["track_id"] for r in join_pieces(apart, 100, 25, 0.2)] == [0, 1]
    assert [r["track_id"] for r in join_pieces(apart, 100, 45, 0.2)] == [0, 0]


def _faces_row(clip_id, track, seg, frames, box, status="ok"):
    from flameqa.vision.stage import FacesStage

    clip = dict(clip_id=clip_id, video_id="v", fps=25.0, width=640, height=480, start_s=0.0)
    if status != "ok":
        return FacesStage._empty_row(clip, status, None, [])
    n = len(frames)
    return dict(FacesStage._empty_row(clip, "ok", None, []), track_id=track, segment=seg, frame_idx=list(frames), detected=[True] * n,
                det_score=[1.0] * n, landmarks=np.full((n, 478 * 3), float(track), np.float32), blendshapes=np.zeros((n, 52), np.float32),
                transform=np.tile(np.eye(4, dtype=np.float32).ravel(), (n, 1)), bbox=np.tile(np.asarray(box, np.float32), (n, 1)),
                mouth_open=np.zeros(n, np.float32))


def test_join_table_reassembles_rows_in_one_order():
    """Joined clips come out in piece, track, segment order whether or not a row was dropped; other
    clips as they were; the landmark columns travel untouched."""
    from flameqa.io.schema import conform
    from flameqa.vision.stage import join_table

    a, b = (100, 100, 200, 220), (400, 100, 500, 220)
    rows = [
        _faces_row("v.c000", 0, 0, range(0, 5), a),
        _faces_row("v.c001", 1, 0, range(20, 100), b),  # split: piece 0, tracks written 1 then 0
        _faces_row("v.c001", 0, 0, range(0, 100), a),
        _faces_row("v.c001", 0, 0, range(100, 200), a),  # piece 1: A goes on
        _faces_row("v.c002", 0, 0, range(0, 5), b),
    ]
    got = join_table(conform("faces", rows), {"v.c001": 100}, 25, 0.2)
    key = list(zip(got.column("clip_id").to_pylist(), got.column("track_id").to_pylist(), got.column("segment").to_pylist()))
    assert key == [("v.c000", 0, 0), ("v.c001", 0, 0), ("v.c001", 1, 0), ("v.c001", 0, 1), ("v.c002", 0, 0)]
    # landmarks follow their rows (filled with the piece's own track id)
    assert [_lm(got, i)[0, 0, 0] for i in range(5)] == [0.0, 0.0, 1.0, 0.0, 0.0]
    # a piece without faces: its row is dropped, the order is the same
    empty = _faces_row("v.c001", -1, 0, [], a, status="no_face")
    got2 = join_table(conform("faces", rows[:3] + [empty] + rows[3:]), {"v.c001": 100}, 25, 0.2)
    assert got2.select(["clip_id", "track_id", "segment", "frame_idx"]).equals(got.select(["clip_id", "track_id", "segment", "frame_idx"]))


def test_a_long_shot_landmarked_in_pieces_keeps_one_track(tmp_path, bundle):
    """One 8.6 s shot in 4 pieces (a MediaPipe restart each) against one pass: the same frames in one
    track, segments numbered on, the first piece bit-identical, the rest within 0.5 px (measured 0.05); the
    same rows with one process or two."""
    from flameqa.bench.pipeline import concat_copies
    from flameqa.stages.base import StageContext
    from flameqa.vision.config import FacesConfig
    from flameqa.vision.stage import FacesStage

    video = concat_copies(grid_clips()[0], tmp_path / "long.mp4", 3)
    batch = pa.Table.from_pylist([clip_row("v.c000", video, 0.4, 9.0)])  # 215 frames: 4 pieces of 54
    got = {}
    for name, piece_s, procs in (("whole", 0.0, 1), ("pieces", 2.0, 1), ("pieces2", 2.0, 2)):
        stage = FacesStage(FacesConfig(piece_s=piece_s), StageContext(out=tmp_path, extra={"processes": procs}))
        try:
            got[name] = stage(batch, {})["faces"]
        finally:
            stage.close()
    assert got["pieces"].equals(got["pieces2"])
    whole, pieces = got["whole"].to_pylist(), got["pieces"].to_pylist()
    assert {r["track_id"] for r in pieces} == {0} and [r["segment"] for r in pieces] == list(range(len(pieces)))
    frames = np.concatenate([r["frame_idx"] for r in pieces])
    np.testing.assert_array_equal(frames, np.concatenate([r["frame_idx"] for r in whole]))
    assert frames.tolist() == list(range(215)) and {r["clip_start_s"] for r in pieces} == {0.4}
    lw = np.concatenate([_lm(got["whole"], i) for i in range(len(whole))])
    lp = np.concatenate([_lm(got["pieces"], i) for i in range(len(pieces))])
    np.testing.assert_array_equal(lp[:54], lw[:54])
    err = np.linalg.norm(lp[54:, :, :2] - lw[54:, :, :2], axis=-1).mean()
    assert err < 0.5, f"pieces' landmarks are {err:.2f} px from one pass"


def test_runs_are_cut_into_balanced_parts():
    from flameqa.vision.stage import clip_runs

    clips = [dict(clip_id=f"v.c{k}", path="v.mp4", fps=25.0, width=2, height=2, rotation=0, start_s=30.0 * k, end_s=30.0 * (k + 1)) for k in range(6)]
    assert [len(r) for r in clip_runs(clips, 4)] == [1, 2, 1, 2]
    assert [len(r) for r in clip_runs(clips, 2)] == [3, 3]
    assert sum(clip_runs(clips, 8), []) == clips and len(clip_runs(clips, 8)) == 6


def test_a_helper_whose_parent_died_while_it_started_exits():
    """The parent's pid travels with the helper: one that finds another parent at start (its run
    was killed while it imported) exits at once instead of taking init for its parent."""
    import subprocess
    import sys

    code = "import os, sys; from flameqa.stages.base import exit_with_parent; exit_with_parent(int(sys.argv[1])); print('alive')"
    gone = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "alive" not in gone.stdout
    import os

    ok = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "alive"
