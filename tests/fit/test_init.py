"""Initialization: MediaPipe pose, rotations, the pluggable parameter regressor, other landmark sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flameqa.fit.config import FitConfig
from flameqa.fit.fitter import Fitter
from flameqa.fit.init import ParamGuess, fill_nearest, load_regressor, matrix_to_axis_angle, procrustes
from flameqa.fit.model import EXPR, JAW, LandmarkModel, rodrigues
from flameqa.fit.synth import make_tracks
from tests.fit.conftest import make_fitter
from tests.fit.toy import toy_arrays

CALLS: list = []


def factory(scale: float = 1.0):
    """A stand-in regressor (``tests.fit.test_init:factory``): records what it is shown."""

    def regress(track):
        CALLS.append(track)
        t = len(track.frame_idx)
        return ParamGuess(shape=np.full(100, 0.1 * scale), expression=np.zeros((t, 50)), jaw=np.zeros((t, 3)))

    return regress


def test_axis_angle_round_trip():
    torch.manual_seed(0)
    for scale in (1e-6, 0.3, 2.0, 3.1):
        r = torch.randn(500, 3, dtype=torch.float64)
        r = r / r.norm(dim=-1, keepdim=True) * torch.rand(500, 1, dtype=torch.float64) * scale
        torch.testing.assert_close(matrix_to_axis_angle(rodrigues(r)), r, rtol=1e-7, atol=1e-9)


def test_fill_nearest_and_procrustes():
    v = torch.tensor([False, True, False, False, True, False])
    assert fill_nearest(v).tolist() == [1, 1, 1, 4, 4, 4]
    rng = np.random.default_rng(0)
    src = rng.normal(size=(30, 3))
    r = rodrigues(torch.tensor([0.2, -0.4, 0.1], dtype=torch.float64)).numpy()
    sim = procrustes(src, 0.01 * src @ r.T + [1, 2, 3])
    assert abs(sim.scale - 0.01) < 1e-9 and np.allclose(sim.rot, r) and np.allclose(sim.transl, [1, 2, 3])


def test_demo_head_alignment_is_identity(demo_fitter):
    """The demo head is MediaPipe's canonical mesh in metres: the alignment is a pure 1/100 scale."""
    a = demo_fitter.align
    assert a is not None and abs(a.scale - 0.01) < 1e-4 and np.allclose(a.rot, np.eye(3), atol=1e-4)


def test_regressor_seeds_are_used(demo_layer):
    fitter = make_fitter(demo_layer, smooth={"preset": "tracking"}, solver={"full_iterations": 0, "shape_iterations": 0})
    tracks, truth = make_tracks(fitter.model, 40, track_frames=40, seed=4)
    tr, gt = tracks[0], truth[0]
    tr.guess = ParamGuess(shape=gt.shape, expression=gt.params[:, EXPR:], jaw=gt.params[:, JAW:JAW + 3])
    fit = fitter.fit([tr])[0]
    np.testing.assert_allclose(fit.shape, gt.shape, atol=1e-5)
    np.testing.assert_allclose(fit.expression, gt.params[:, EXPR:], atol=1e-5)
    np.testing.assert_allclose(fit.jaw, gt.params[:, JAW:JAW + 3], atol=1e-5)


def test_regressor_plugs_into_the_stage(demo_fitter):
    from flameqa.fit.stage import FitStage
    from flameqa.io.schema import conform
    from flameqa.stages.base import StageContext
    from tests.fit.test_stage import faces_rows

    assert callable(load_regressor("tests.fit.test_init:factory", {"scale": 2.0}))
    with pytest.raises(ValueError, match="package.module:factory"):
        load_regressor("nonsense")
    with pytest.raises(ValueError, match="cannot import"):
        load_regressor("no_such_package_xyz:factory")
    cfg = FitConfig.model_validate({"device": "cpu", "init": {"regressor": "tests.fit.test_init:factory", "regressor_args": {"scale": 1.0}}})
    stage = FitStage(cfg, StageContext(out=None))  # type: ignore[arg-type]
    tracks, _ = make_tracks(demo_fitter.model, 50, track_frames=50, seed=6)
    CALLS.clear()
    out = stage(conform("faces", faces_rows(tracks, segment_frames=25)), {})["flame"]
    assert out.num_rows == 2 and set(out.column("status").to_pylist()) == {"ok"}
    (obs,) = CALLS  # one call per track, not per segment
    assert obs.clip_id == "clip0" and obs.landmarks.shape == (50, 478, 3) and obs.width == 512


def test_other_landmark_sets_fit(demo_layer):
    """A model with barycentric (non one-hot) landmarks, pose correctives, no eye corners (the eye
    distance falls back to the face width) and no canonical alignment (rotation from landmarks)."""
    torch.manual_seed(0)
    model = LandmarkModel.from_arrays(**toy_arrays(n_vertices=200, n_landmarks=60, n_shape=8, n_expr=6, seed=2), dtype=torch.float32)
    cfg = FitConfig.model_validate({"n_shape": 8, "n_expr": 6, "smooth": {"preset": "tracking"}, "data": {"visibility": False}})
    fitter = Fitter(model, cfg, device="cpu", align=None)
    tracks, truth = make_tracks(model, 120, track_frames=60, seed=1, noise_px=0.5)
    for tr in tracks:
        tr.transform = None
    fits = fitter.fit(tracks)
    for f, g in zip(fits, truth):
        assert f.status == "ok" and f.valid.all()
        rmse = np.sqrt(((f.uv - g.noisy_uv[:, :, :]) ** 2).sum(-1).mean())
        assert rmse < 1.0  # noise is 0.5 px per coordinate → 0.71 px
