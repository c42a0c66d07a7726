"""The batched fitter on synthetic tracks with known ground truth (demo head, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.fit.fitter import TrackData, chunk_ranges, stitch
from flameqa.fit.model import JAW
from flameqa.fit.synth import evaluate, make_tracks
from tests.fit.conftest import make_fitter


@pytest.fixture(scope="module")
def synthetic(demo_fitter):
    return make_tracks(demo_fitter.model, 360, track_frames=120, seed=3)


def test_recovers_ground_truth(demo_layer, demo_fitter, synthetic):
    tracks, truth = synthetic
    fits = demo_fitter.fit(tracks)
    r = evaluate(demo_layer, demo_fitter.model, fits, truth)
    # explains the landmarks down to the noise, and recovers what produced them
    assert r["landmark_rmse_px"] <= 1.05 * r["noise_rms_px"]
    assert r["landmark_rmse_gt_px"] < 0.5 * r["noise_rms_px"]
    assert r["jaw_err_deg"] < 1.2
    assert r["vertex_err_mm"] < 1.2
    for f in fits:
        assert f.status == "ok" and f.valid.all() and np.isfinite(f.params).all()
        assert np.nanmax(f.nme) < 0.05 and f.iterations >= 1


def test_batch_independence(demo_fitter, synthetic):
    """A track's result does not depend on what else is in the batch (or how it is padded)."""
    tracks, _ = synthetic
    short = TrackData(**{**tracks[1].__dict__, "landmarks": tracks[1].landmarks[:70], "detected": tracks[1].detected[:70],
                         "det_score": tracks[1].det_score[:70], "transform": tracks[1].transform[:70]})
    alone = demo_fitter.fit([tracks[0]])[0]
    together = demo_fitter.fit([short, tracks[2], tracks[0]])[2]
    np.testing.assert_allclose(together.params, alone.params, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(together.shape, alone.shape, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(together.fit_rmse_px, alone.fit_rmse_px, atol=1e-3)


def test_missing_frames_are_marked_not_dropped(demo_fitter, synthetic):
    tracks, truth = synthetic
    tr = tracks[0]
    lm = tr.landmarks.copy()
    det = tr.detected.copy()
    tf = tr.transform.copy()
    gone = np.r_[10:25, 60, 61, 115:120]  # a gap, two single frames, the track's end
    lm[gone] = np.nan
    tf[gone] = np.nan
    det[gone] = False
    fit = demo_fitter.fit([TrackData(landmarks=lm, detected=det, width=tr.width, height=tr.height, fps=tr.fps, transform=tf)])[0]
    assert fit.params.shape[0] == tr.n_frames  # every frame has a row
    assert not fit.valid[gone].any() and fit.valid[np.setdiff1d(np.arange(tr.n_frames), gone)].all()
    assert np.isnan(fit.fit_rmse_px[gone]).all() and np.isnan(fit.nme[gone]).all()
    assert np.isfinite(fit.params).all()  # the smoothness prior carries the pose through the gaps
    # ... and the (slow) head pose is interpolated close to the truth inside the gap
    rot_gap = np.degrees(np.abs(fit.params[10:25, :3] - truth[0].params[10:25, :3])).max()
    assert rot_gap < 2.0


def test_nan_and_inf_never_reach_the_solver(demo_fitter, synthetic):
    tracks, _ = synthetic
    tr = tracks[1]
    rng = np.random.default_rng(0)
    lm = tr.landmarks.copy()
    bad = rng.random(lm.shape[:2]) < 0.05
    lm[bad] = np.where(rng.random((bad.sum(), 1)) < 0.5, np.nan, np.inf)
    tf = tr.transform.copy()
    tf[::7] = np.nan
    score = tr.det_score.copy()
    score[::11] = np.nan
    fit = demo_fitter.fit([TrackData(landmarks=lm, detected=tr.detected, width=tr.width, height=tr.height, fps=tr.fps,
                                     det_score=score, transform=tf)])[0]
    assert np.isfinite(fit.params).all() and np.isfinite(fit.shape).all()
    assert fit.valid.all() and np.nanmax(fit.nme) < 0.05


def test_track_without_faces_fails_cleanly(demo_fitter):
    t = 20
    tr = TrackData(landmarks=np.full((t, 478, 3), np.nan, np.float32), detected=np.zeros(t, bool), width=320, height=240)
    (fit,) = demo_fitter.fit([tr])
    assert fit.status == "failed" and "no detected face" in fit.error
    assert fit.params.shape[0] == t and not fit.valid.any()


def test_chunk_ranges_cover_with_overlap():
    for t in (1, 99, 100, 101, 250, 777, 5000):
        ch = chunk_ranges(t, 100, 16)
        assert ch[0][0] == 0 and ch[-1][1] == t and all(e - s <= 100 for s, e in ch)
        assert all(b[0] <= a[1] - 16 for a, b in zip(ch, ch[1:]))
    out = stitch([(0, 6), (4, 10)], [np.zeros((6, 1)), np.ones((6, 1))], 10)
    assert out[:4].max() == 0 and out[6:].min() == 1 and np.all(np.diff(out[:, 0]) >= 0)


def test_chunked_long_track_is_seamless(demo_layer):
    """A long track cut into overlapping chunks gives the unchunked solution, with no seam."""
    fit_whole = make_fitter(demo_layer, smooth={"preset": "tracking"}, solver={"chunk_frames": 1000, "full_iterations": 3, "tol": 1e-6})
    fit_chunk = make_fitter(demo_layer, smooth={"preset": "tracking"}, solver={"chunk_frames": 96, "chunk_overlap": 24, "full_iterations": 3, "tol": 1e-6})
    tracks, _ = make_tracks(fit_whole.model, 300, track_frames=300, seed=5)
    a = fit_whole.fit(tracks)[0]
    b = fit_chunk.fit(tracks)[0]
    seams = [e for _, e in chunk_ranges(300, 96, 24)[:-1]]
    assert len(seams) >= 2
    diff = np.abs(a.params - b.params)
    np.testing.assert_allclose(b.params[:, JAW:], a.params[:, JAW:], atol=0.03)  # radians / coefficients
    assert np.degrees(diff[:, JAW]).max() < 0.5
    # acceleration of the fitted landmarks around the seams is no larger than elsewhere
    acc = np.linalg.norm(b.uv[2:] - 2 * b.uv[1:-1] + b.uv[:-2], axis=-1).mean(1)
    near = np.concatenate([np.arange(s - 30, s + 5) for s in seams])
    assert acc[near].max() <= 1.5 * np.percentile(acc, 99)
    assert abs(b.jitter_ratio - a.jitter_ratio) < 0.02


def test_track_jitter_equals_jitter_per_track():
    """The one-pass jitter over tracks laid end to end is the per-track figure (no triple crosses a track)."""
    import torch

    from flameqa.fit.fitter import jitter, track_jitter

    rng = np.random.default_rng(4)
    lens = [5, 2, 40, 3]
    uv = [rng.normal(size=(t, 6, 2)).astype(np.float32) for t in lens]
    obs = [u + rng.normal(size=u.shape).astype(np.float32) for u in uv]
    ok = [rng.random((t, 6)) > 0.2 for t in lens]
    ok[3][:] = False  # a track without any full triple
    track = np.repeat(np.arange(len(lens)), lens)
    start = np.repeat(np.cumsum([0] + lens[:-1]), lens)
    got = track_jitter(*(torch.as_tensor(np.concatenate(a)) for a in (uv, obs, ok)), torch.as_tensor(track), torch.as_tensor(start), len(lens)).numpy()
    for k in range(len(lens)):
        _, raw, fit = jitter(uv[k], obs[k], ok[k])
        if raw is None:
            assert np.isnan(got[k]).all()
        else:
            np.testing.assert_allclose(got[k], [raw, fit], rtol=1e-5)
