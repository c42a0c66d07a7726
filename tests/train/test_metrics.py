"""Vertex metrics through the FLAME layer, face regions (safely loaded masks), baselines."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from flameqa.train.data import MotionSequence
from flameqa.train.metrics import (
    MEDIAPIPE_LIPS,
    EnergyJawBaseline,
    VertexEvaluator,
    aggregate,
    face_regions,
    frechet_distance,
    pearson,
    sequence_metrics,
)


@pytest.fixture(scope="module")
def ev():
    return VertexEvaluator("demo", n_shape=10)


def _seq(T=60, n_expr=10, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 25
    jaw = np.zeros((T, 3), np.float32)
    jaw[:, 0] = 0.1 + 0.08 * np.sin(2 * np.pi * 2 * t)
    expr = np.zeros((T, 100), np.float32)
    expr[:, :n_expr] = 0.3 * rng.standard_normal((T, n_expr))
    motion = np.concatenate([expr[:, :n_expr], jaw, np.zeros((T, 3), np.float32)], 1)
    energy = np.roll(jaw[:, 0], -2) * 10  # audio leads the jaw by 2 frames
    return MotionSequence("s", "a", np.zeros((2 * T, 4), np.float32), motion, np.ones(T, bool), energy.astype(np.float32),
                          np.zeros(0, np.int64), expr, rng.standard_normal(10).astype(np.float32), 25.0)  # fmt: skip


def test_ground_truth_scores_perfectly_and_a_jaw_error_shows_on_the_lips(ev):
    s = _seq()
    r = sequence_metrics(ev, s.motion, s, 10)
    assert r["lve"] == 0 and r["mve"] == 0 and r["fdd"] == 0 and r["neck_mae"] == 0
    assert r["lipsync_corr"] == pytest.approx(1.0) and r["jaw_energy_gap"] == 0
    assert r["jaw_energy_corr_gt"] > 0.99  # found at lag 2
    pred = s.motion.copy()
    pred[:, 10] += 0.05  # jaw opened 0.05 rad more
    r2 = sequence_metrics(ev, pred, s, 10)
    gv = ev.vertices(s.expression_full, s.motion[:, 10:13], None, s.shape)
    pv = ev.vertices(s.expression_full, pred[:, 10:13], None, s.shape)
    d = np.linalg.norm(pv - gv, axis=-1)
    assert r2["lve"] == pytest.approx(d[:, MEDIAPIPE_LIPS].max(1).mean(), rel=1e-5)
    assert r2["lve"] > r2["mve"] > 0 and r2["lve"] > 1e-3  # millimetres at the lips
    agg = aggregate([r, r2])
    assert agg["lve"] == pytest.approx(r2["lve"] / 2) and agg["sequences"] == 2 and agg["fd_expression"] < 1e-4


def test_demo_regions_and_flame_masks_through_the_restricted_unpickler(ev, tmp_path):
    reg = ev.regions
    assert reg.source == "mediapipe" and len(reg.lips) == 40 and {13, 14, 61, 291} <= set(reg.lips.tolist())
    v = ev.layer.v_template.numpy()
    assert (v[reg.upper, 1] > v[1, 1]).all() and 10 in reg.upper  # forehead point above the nose tip
    flame_like = np.zeros((5023, 3), np.float32)
    with pytest.raises(ValueError, match="FLAME_masks.pkl"):
        face_regions(flame_like, "flame2023")
    masks = {"lips": np.arange(100, 160), "forehead": np.arange(3000, 3100), "eye_region": np.arange(3500, 3550), "nose": np.arange(5)}
    p = tmp_path / "FLAME_masks.pkl"
    p.write_bytes(pickle.dumps(masks, protocol=2))
    r = face_regions(flame_like, "flame2023", p)
    assert len(r.lips) == 60 and len(r.upper) == 150

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"lips": Evil()}, protocol=2))
    from flameqa.flame.io import UnsafePickleError

    with pytest.raises(UnsafePickleError):
        face_regions(flame_like, "flame2023", bad)
    assert not (tmp_path / "pwned").exists()


def test_frechet_and_pearson():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 3))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(x, x + [2, 0, 0]) == pytest.approx(4, rel=1e-3)
    assert pearson(np.ones(10), np.arange(10.0)) == 0.0


def test_energy_jaw_baseline_learns_a_lagged_linear_map():
    from flameqa.train.data import NormStats

    seqs = [_seq(T=200, seed=i) for i in range(3)]
    stats = NormStats.fit(seqs)
    b = EnergyJawBaseline(10, taps=4).fit(seqs, stats)
    s = seqs[0]
    pred = b.predict(s, stats.for_identity("a"))
    # energy leads by 2 frames: a causal filter of past energy reproduces the jaw almost exactly
    assert pearson(pred[:, 10], s.motion[:, 10]) > 0.99
    np.testing.assert_array_equal(pred[:, :10], np.tile(stats.for_identity("a")[0][:10], (200, 1)))
    assert EnergyJawBaseline.from_state(b.to_state()).taps == 4


def test_vertex_metrics_refuse_a_mismatched_model():
    from flameqa.train.loop import check_model_ids

    with pytest.raises(ValueError, match="eval.flame_model"):
        check_model_ids(["flame2023"], "flameqa-demo-head")
    check_model_ids(["flameqa-demo-head"], "flameqa-demo-head")
