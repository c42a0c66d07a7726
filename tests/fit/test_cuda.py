"""The fitter on CUDA computes what it computes on the CPU (skipped without a CUDA device)."""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.fit.synth import evaluate, make_tracks
from tests.fit.conftest import make_fitter

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _cuda_fitter(layer):
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import build_fitter

    return build_fitter(FitConfig.model_validate({"smooth": {"preset": "tracking"}}), device="cuda", layer=layer)


def test_cuda_fit_matches_cpu_and_ground_truth(demo_layer):
    cpu = make_fitter(demo_layer, smooth={"preset": "tracking"})
    gpu = _cuda_fitter(demo_layer)
    assert gpu.device.type == "cuda"
    tracks, truth = make_tracks(cpu.model, 600, track_frames=200, seed=11)
    on_cpu, on_gpu = cpu.fit(tracks), gpu.fit(tracks)
    for a, b in zip(on_cpu, on_gpu):
        assert b.status == "ok" and b.valid.all() and np.isfinite(b.params).all()
        # float32 on both; different reduction orders (cuBLAS vs MKL/OpenBLAS): agree to well under a pixel
        np.testing.assert_allclose(b.fit_rmse_px, a.fit_rmse_px, atol=2e-2)
        np.testing.assert_allclose(b.params, a.params, atol=5e-3)
        np.testing.assert_allclose(b.shape, a.shape, atol=5e-3)
    r = evaluate(demo_layer, gpu.model, on_gpu, truth)
    assert r["landmark_rmse_px"] <= 1.05 * r["noise_rms_px"]
    assert r["jaw_err_deg"] < 1.2 and r["vertex_err_mm"] < 1.2


def test_cuda_fit_of_missing_and_nonfinite_frames(demo_layer):
    """Frames without a face and NaN/Inf landmarks are handled on the GPU as on the CPU."""
    cpu = make_fitter(demo_layer, smooth={"preset": "tracking"})
    gpu = _cuda_fitter(demo_layer)
    tracks, _ = make_tracks(cpu.model, 120, track_frames=120, seed=12)
    t = tracks[0]
    t.detected[10:20] = False
    t.landmarks[30] = np.nan
    t.landmarks[31, 5] = np.inf
    a, b = cpu.fit([t])[0], gpu.fit([t])[0]
    assert b.status == "ok" and np.isfinite(b.params).all()
    assert not b.valid[10:20].any() and b.valid[40:].all()
    np.testing.assert_array_equal(b.valid, a.valid)
