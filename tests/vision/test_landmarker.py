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

    from flameqa.vision.landmarker import FaceLandmarker, _frame_faces, _to_arrays
    from flameqa.vision.mp_results import VideoCall

    clips = list(grid_frames.values())
    frames = [f for f in clips[0].frames[:5]] + [np.concatenate([a, b], axis=1) for a, b in zip(clips[0].frames[5:10], clips[-1].frames[5:10])]
    frames.append(np.zeros_like(frames[-1]))
    # two fresh graphs fed the same frames at the same times, one read each way
    with FaceLandmarker() as a, FaceLandmarker() as b:
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
