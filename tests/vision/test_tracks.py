"""Face tracking on synthetic detections: linking, gaps marked not invented, segments, blips."""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.vision.landmarker import FrameFaces, box_iou, dedupe, landmark_boxes
from flameqa.vision.tracks import FaceTracker


def face_at(cx: float, cy: float, size: float = 100.0, score: float = 0.9) -> FrameFaces:
    """One fake face: 478 points spread over a ``size`` box centred at (cx, cy)."""
    rng = np.random.default_rng(int(cx * 7 + cy))
    lm = np.zeros((1, 478, 3), np.float32)
    lm[0, :, 0] = cx + rng.uniform(-size / 2, size / 2, 478)
    lm[0, :, 1] = cy + rng.uniform(-size / 2, size / 2, 478)
    lm[0, :2, 0] = cx - size / 2, cx + size / 2  # make the box exact
    lm[0, :2, 1] = cy - size / 2, cy + size / 2
    return FrameFaces(lm, np.full((1, 52), 0.1, np.float32), np.tile(np.eye(4, dtype=np.float32), (1, 1, 1)), np.array([score], np.float32))


def frame(*faces: FrameFaces) -> FrameFaces:
    return FrameFaces.concat(list(faces))


def run(frames: list[FrameFaces], **kw) -> list:
    segs: list = []
    tr = FaceTracker(segs.append, **kw)
    for i, f in enumerate(frames):
        tr.update(i, f)
    tr.finish()
    return segs, tr


def test_two_faces_keep_their_ids_whatever_the_detection_order():
    frames = []
    for i in range(20):
        a, b = face_at(100 + i, 200), face_at(400 - i, 200)
        frames.append(frame(a, b) if i % 2 else frame(b, a))  # MediaPipe's face order is not stable
    segs, _ = run(frames, min_track_frames=3)
    assert len(segs) == 2
    for s in segs:
        xs = s.bbox[:, 0]
        assert s.n == 20 and s.detected.all()
        assert np.all(np.abs(np.diff(xs)) <= 1.01), "a track jumped between the two faces"


def test_gap_is_marked_not_invented():
    frames = [face_at(100, 100) for _ in range(10)] + [FrameFaces.empty()] * 4 + [face_at(104, 100) for _ in range(6)]
    segs, _ = run(frames, max_gap_frames=5, min_track_frames=3)
    assert len(segs) == 1
    s = segs[0]
    assert s.n == 20 and list(s.frame_idx) == list(range(20))
    assert s.detected.sum() == 16 and not s.detected[10:14].any()
    assert np.isnan(s.landmarks[10:14]).all() and np.isnan(s.det_score[10:14]).all()
    assert np.isfinite(s.landmarks[s.detected]).all()


def test_long_absence_ends_the_track_and_trailing_gap_is_trimmed():
    frames = [face_at(100, 100)] * 10 + [FrameFaces.empty()] * 10 + [face_at(100, 100)] * 10 + [FrameFaces.empty()] * 3
    segs, _ = run(frames, max_gap_frames=5, min_track_frames=3)
    assert [s.track_id for s in segs] == [0, 1]
    assert list(segs[0].frame_idx) == list(range(10)) and list(segs[1].frame_idx) == list(range(20, 30))


def test_far_jump_starts_a_new_track():
    frames = [face_at(100, 100)] * 8 + [face_at(600, 400)] * 8
    segs, _ = run(frames, min_track_frames=3)
    assert len(segs) == 2 and segs[0].n == 8 and segs[1].frame_idx[0] == 8


def test_segments_are_cut_and_emitted_while_the_track_is_open():
    emitted_at: list[int] = []
    current = {"i": 0}
    segs: list = []

    def on_segment(s):
        segs.append(s)
        emitted_at.append(current["i"])

    tr = FaceTracker(on_segment, max_segment_frames=10, min_track_frames=3)
    for i in range(25):
        current["i"] = i
        tr.update(i, face_at(100, 100))
    tr.finish()
    assert [s.n for s in segs] == [10, 10, 5] and [s.segment for s in segs] == [0, 1, 2]
    assert emitted_at[:2] == [9, 19], "segments must leave memory as soon as they are full"
    assert np.concatenate([s.frame_idx for s in segs]).tolist() == list(range(25))


def test_blips_get_no_track_id_and_ids_stay_dense():
    frames = [frame(face_at(100, 100), face_at(500, 100)) if i in (3, 4) else face_at(100, 100) for i in range(12)]
    segs, tr = run(frames, min_track_frames=5)
    assert [s.track_id for s in segs] == [0] and tr.dropped == 1


def test_dedupe_and_iou():
    a = face_at(100, 100, score=0.9)
    b = face_at(103, 101, score=0.5)
    c = face_at(400, 100)
    kept = dedupe(frame(b, a, c))
    assert kept.n == 2 and sorted(kept.det_score.tolist()) == pytest.approx([0.9, 0.9])
    boxes = landmark_boxes(frame(a, c).landmarks)
    iou = box_iou(boxes, boxes)
    assert iou[0, 0] == pytest.approx(1.0) and iou[0, 1] == 0.0


def test_skipped_detector_frames_hold_the_track_score():
    frames = []
    for i in range(12):
        f = face_at(100, 100, score=0.5 + i / 100)
        if i % 5 != 2:  # the detector ran on frames 2 and 7 only
            f.det_score[:] = np.nan
        frames.append(f)
    frames[9] = FrameFaces.empty()
    segs, _ = run(frames, min_track_frames=3, max_segment_frames=6)
    score = np.concatenate([s.det_score for s in segs])
    det = np.concatenate([s.detected for s in segs])
    assert np.isnan(score[9]) and not det[9]
    assert score[:3] == pytest.approx([0.52] * 3), "frames before the first score take the first score"
    assert score[3:7] == pytest.approx([0.52] * 4) and score[7] == pytest.approx(0.57)
    assert score[[8, 10, 11]] == pytest.approx([0.57] * 3)

