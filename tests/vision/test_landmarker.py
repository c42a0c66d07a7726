"""The MediaPipe wrapper: bundle checks, VIDEO-mode timestamps, image zoom search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flameqa.vision.landmarker import _verify


def test_corrupt_cached_bundle_is_refused(tmp_path):
    p = tmp_path / "face_landmarker.task"
    p.write_bytes(b"not a model")
    (tmp_path / "_done.json").write_text(json.dumps({"sha256": {"face_landmarker.task": "0" * 64}}))
    with pytest.raises(ValueError, match="make setup"):
        _verify(p, p.read_bytes())


def test_video_mode_tolerates_repeated_timestamps_and_restarts_per_clip(landmarker, grid_frames):
    frames = grid_frames["bbaf2n"].frames[:6]
    for _ in range(2):  # a second clip restarts at t=0 (the graph maps it past the first clip's times)
        landmarker.start_clip()
        out = [landmarker.detect(f, 0) for f in frames]  # same timestamp every frame
        assert [f.n for f in out] == [1] * 6
        f = out[-1]
        assert f.landmarks.shape == (1, 478, 3) and f.blendshapes.shape == (1, 52) and f.transform.shape == (1, 4, 4)
        assert 0.3 < f.det_score[0] <= 1.0


def test_start_clip_cuts_tracking_like_a_fresh_graph(bundle, grid_frames):
    """One graph serves every clip: after start_clip a clip's landmarks equal a fresh graph's, and
    closing no graph per clip means native memory does not grow with the number of clips."""
    from flameqa.vision.landmarker import FaceLandmarker

    a_frames, b_frames = grid_frames["bbaf2n"].frames[:8], list(grid_frames.values())[-1].frames[:8]

    def clip(lm, frames):
        lm.start_clip()
        return np.stack([lm.detect(f, 40 * i).landmarks[0] for i, f in enumerate(frames)])

    with FaceLandmarker() as shared:
        clip(shared, a_frames)
        after = clip(shared, b_frames)
        graph = shared._lm
        for _ in range(3):
            clip(shared, a_frames[:2])
        assert shared._lm is graph  # no graph per clip
    with FaceLandmarker() as fresh:
        alone = clip(fresh, b_frames)
    np.testing.assert_array_equal(after, alone)


def test_full_size_maps_a_downscaled_frame_back(landmarker, grid_frames):
    import cv2

    frame = grid_frames["bbaf2n"].frames[0]
    landmarker.start_clip()
    full = landmarker.detect(frame, 0)
    landmarker.start_clip()
    half = landmarker.detect(cv2.resize(frame, (180, 144), interpolation=cv2.INTER_AREA), 0, full_size=(360, 288))
    err = np.linalg.norm(full.landmarks[0, :, :2] - half.landmarks[0, :, :2], axis=-1).mean()
    assert err < 3.0, f"half-size landmarks mapped back are {err:.1f} px off"


def test_image_zoom_search_finds_a_small_face(landmarker, grid_frames):
    import cv2

    face = grid_frames["bbaf2n"].frames[0]
    canvas = np.full((1080, 1440, 3), 40, np.uint8)
    canvas[700:844, 100:280] = cv2.resize(face, (180, 144), interpolation=cv2.INTER_AREA)
    found = landmarker.detect_image(canvas)
    assert found.n == 1
    cx, cy = found.landmarks[0, :, :2].mean(0)
    assert 100 < cx < 280 and 700 < cy < 844
    assert landmarker.detect_image(canvas, zoom=()).n == 0, "without the zoom search the face is too small"


def test_array_results_equal_the_public_result_objects(bundle, grid_frames):
    """The C-struct reader (mp_results) gives bit-identical arrays to MediaPipe's public result
    objects: one face per GRID frame, two when two speakers sit side by side, none on black."""
    import mediapipe as mp

    from flameqa.vision.config import LandmarkerConfig
    from flameqa.vision.landmarker import FaceLandmarker, _frame_faces, _to_arrays
    from flameqa.vision.mp_results import VideoCall

    clips = list(grid_frames.values())
    frames = [f for f in clips[0].frames[:5]] + [np.concatenate([a, b], axis=1) for a, b in zip(clips[0].frames[5:10], clips[-1].frames[5:10])]
    frames.append(np.zeros_like(frames[-1]))
    # two fresh graphs (each looking for max_faces) fed the same frames at the same times, one read each way
    cfg = LandmarkerConfig(adapt_faces=False)
    with FaceLandmarker(cfg) as a, FaceLandmarker(cfg) as b:
        a.start_clip(), b.start_clip()
        call = VideoCall.of(b._lm)
        assert call is not None, "mediapipe internals changed: the faces stage has lost its fast result path"
        counts = []
        for i, f in enumerate(frames):
            img = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(f))
            public = _to_arrays(a._lm.detect_for_video(img, 40 * i), f.shape[1], f.shape[0])
            fast = _frame_faces(*call(img, 40 * i), f.shape[1], f.shape[0])
            counts.append(fast.n)
            np.testing.assert_array_equal(fast.landmarks, public.landmarks)
            np.testing.assert_array_equal(fast.blendshapes, public.blendshapes)
            np.testing.assert_array_equal(fast.transform, public.transform)
    assert counts == [1] * 5 + [2] * 5 + [0]


def test_fast_results_fall_back_when_mediapipe_internals_differ():
    from flameqa.vision.mp_results import VideoCall

    assert VideoCall.of(object()) is None  # a graph without _lib/_handle: the public path is used


def test_graph_for_the_faces_seen_tracks_steadier_than_one_looking_for_more(bundle, grid_frames):
    """One face, a graph looking for 4: MediaPipe re-detects on every frame and the landmarks
    shake; the adaptive graph (1 face here) tracks. Measured 0.35–0.45 of the motion on GRID."""
    from flameqa.vision.bench import landmark_acceleration
    from flameqa.vision.config import LandmarkerConfig
    from flameqa.vision.landmarker import FaceLandmarker

    frames = grid_frames["bbaf2n"].frames[:40]
    acc = {}
    for adapt in (True, False):
        with FaceLandmarker(LandmarkerConfig(adapt_faces=adapt)) as lm:
            lm.start_clip()
            acc[adapt] = landmark_acceleration(np.stack([lm.detect(f, 40 * i).landmarks[0] for i, f in enumerate(frames)]))
            assert lm._k == (1 if adapt else 4)
    assert acc[True] < 0.7 * acc[False], acc


def test_graph_grows_when_a_face_enters_and_shrinks_when_it_leaves(bundle, grid_frames):
    from flameqa.vision.config import LandmarkerConfig
    from flameqa.vision.landmarker import FaceLandmarker

    clips = list(grid_frames.values())
    a, b = clips[0].frames, clips[-1].frames
    gray = np.full_like(b[0], 90)
    # 0-9 one face, 10-29 two, 30-49 one again
    frames = [np.concatenate([a[i], b[i] if 10 <= i < 30 else gray], axis=1) for i in range(50)]
    every = 5
    with FaceLandmarker(LandmarkerConfig(det_score_every=every)) as lm:
        lm.start_clip()
        counts, ks = [], []
        for i, f in enumerate(frames):
            counts.append(lm.detect(f, 40 * i).n)
            ks.append(lm._k)
        assert counts[:10] == [1] * 10 and ks[:10] == [1] * 10
        # found by the next score at the latest, then landmarked on every frame while it is there
        first = counts.index(2)
        assert 10 <= first <= 10 + every + 1 and counts[first:30] == [2] * (30 - first)
        assert counts[30:] == [1] * 20
        assert ks[-1] == 1, ks  # two scores with one face: back to the 1-face graph
        # a clip that opens on two faces is landmarked on both from its first frame
        lm.start_clip()
        assert lm.detect(frames[15], 0).n == 2 and lm._k == 2
