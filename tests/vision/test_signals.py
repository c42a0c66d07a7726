"""Pure signal code: mouth opening/activity, voice activity, scores and assignment, head pose."""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.vision.active_speaker import TrackSignal, assign, pearson, score_matrix, voice_activity
from flameqa.vision.mouth import mouth_activity, mouth_open, rolling
from flameqa.vision.pose import head_angles, rotation_matrix


def test_mouth_open_is_scale_free_and_nan_safe():
    lm = np.zeros((3, 478, 3), np.float32)
    lm[:, 33, 0], lm[:, 263, 0] = 0.0, 100.0
    lm[:, 13, 1], lm[:, 14, 1] = 0.0, 30.0
    lm[1] *= 2
    lm[2] = np.nan
    m = mouth_open(lm)
    assert m[:2] == pytest.approx([0.3, 0.3]) and np.isnan(m[2])


def test_rolling_ignores_nan_and_needs_enough_samples():
    x = np.array([1, 1, 1, np.nan, np.nan, np.nan, np.nan, 3, 3, 3], float)
    m = rolling(x, 3, "mean")
    assert m[0] == pytest.approx(1) and np.isnan(m[4]) and m[8] == pytest.approx(3)
    s = rolling(np.array([0, 2, 0, 2, 0, 2.0]), 3, "std")
    assert np.all(s[1:-1] > 0.9)


def _talk(T, on, fps=25.0, rng=None):
    """Mouth opening: 4 Hz syllables while ``on``, nearly still otherwise."""
    rng = rng or np.random.default_rng(0)
    t = np.arange(T) / fps
    return np.where(on, 0.25 + 0.2 * np.sin(2 * np.pi * 4 * t), 0.02) + rng.normal(0, 0.005, T)


def test_the_talking_track_gets_its_speaker_and_the_off_camera_voice_none():
    fps, T = 25.0, 500
    t = np.arange(T) / fps
    turns = {"A": [(0, 4), (12, 16)], "B": [(4, 8)], "C": [(8, 12), (16, 20)]}  # C is off camera
    va = voice_activity(turns["A"], t) > 0
    vb = voice_activity(turns["B"], t) > 0
    tracks = [TrackSignal(7, t, _talk(T, vb)), TrackSignal(3, t, _talk(T, va))]
    tracks[0].opening[100:130] = np.nan  # a gap in B's face
    S = score_matrix(tracks, turns, fps)
    assert S.shape == (3, 2)
    assert S[0, 1] > 0.6 and S[1, 0] > 0.6 and np.nanmax(S[2]) < 0.2
    assert assign(S, 0.2).tolist() == [1, 0, -1]


def test_not_comparable_pairs_are_nan():
    fps = 25.0
    t = np.arange(100) / fps
    S = score_matrix([TrackSignal(0, t, _talk(100, np.ones(100, bool)))], {"A": [(10.0, 20.0)], "B": [(0.0, 4.0)]}, fps)
    assert np.isnan(S[0, 0]), "speaker A never talks while the track is visible"
    assert np.isnan(S[1, 0]), "B talks the whole time the track is visible: no contrast, no correlation"
    assert assign(S, 0.2).tolist() == [-1, -1]
    assert np.isnan(pearson(np.ones(10), np.arange(10.0)))


def test_assignment_is_one_to_one():
    S = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert assign(S, 0.2).tolist() == [1, 0]
    assert assign(np.zeros((2, 0)), 0.2).tolist() == [-1, -1]


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (30, 0, 0), (-60, 10, 5), (20, -15, 30)])
def test_head_angles_roundtrip(yaw, pitch, roll):
    m = rotation_matrix(yaw, pitch, roll)
    m[:3, :3] *= 3.0  # MediaPipe's matrix may carry a uniform scale
    assert head_angles(m) == pytest.approx([yaw, pitch, roll], abs=1e-6)
    assert np.isnan(head_angles(np.full((4, 4), np.nan))).all()


def test_mouth_activity_follows_talking():
    on = np.r_[np.zeros(100, bool), np.ones(100, bool)]
    a = mouth_activity(_talk(200, on), 25.0)
    assert np.nanmean(a[120:190]) > 5 * np.nanmean(a[10:90])


def test_a_barely_moving_face_cannot_take_a_voice_on_a_chance_correlation():
    fps, T = 25.0, 300
    t = np.arange(T) / fps
    turns = {"X": [(2.0, 5.0), (8.0, 10.0)]}
    on = voice_activity(turns["X"], t) > 0
    jitter = np.where(on, 0.02 + 0.003 * np.sin(2 * np.pi * 4 * t), 0.02)  # correlated, but tiny
    S = score_matrix([TrackSignal(0, t, jitter)], turns, fps, talk_activity=0.02)
    S_raw = score_matrix([TrackSignal(0, t, jitter)], turns, fps, talk_activity=0.0)
    assert S_raw[0, 0] > 0.5 and S[0, 0] < 0.2
