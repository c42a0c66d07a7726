"""The math kernel and the layer on a random FLAME-format model (nonzero pose correctives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from flameqa.flame import FlameLayer, compose_pose
from flameqa.flame import lbs as L

from ._fixtures import random_model


@pytest.fixture(scope="module")
def rand_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("randmodel")
    arrays = random_model(seed=1)
    np.savez(d / "model.npz", **arrays)
    rng = np.random.default_rng(2)
    nf = arrays["f"].shape[0]
    b = rng.random((105, 3))
    np.savez(
        d / "mediapipe_landmark_embedding.npz",
        lmk_face_idx=rng.integers(0, nf, 105).astype(np.uint32),
        lmk_b_coords=b / b.sum(1, keepdims=True),
        landmark_indices=rng.choice(468, 105, replace=False),
    )
    return d


@pytest.fixture(scope="module")
def rand64(rand_dir: Path) -> FlameLayer:
    return FlameLayer.from_file(rand_dir / "model.npz", dtype=torch.float64)


def _params(b: int, layer: FlameLayer, seed: int = 0, pose_scale: float = 0.3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    kw = {"generator": g, "dtype": layer.dtype}
    return {
        "shape": torch.randn(b, layer.n_shape, **kw),
        "expression": torch.randn(b, layer.n_expr, **kw),
        "pose": pose_scale * torch.randn(b, 15, **kw),
        "transl": 0.1 * torch.randn(b, 3, **kw),
    }


def test_rodrigues_matches_scipy_and_is_exact_at_zero():
    r = torch.tensor(np.random.default_rng(0).standard_normal((50, 3)) * 1.5)
    r[0] = 0.0
    r[1] = 1e-5
    ref = Rotation.from_rotvec(r.numpy()).as_matrix()
    assert np.abs(L.axis_angle_to_matrix(r).numpy() - ref).max() < 1e-12
    # d R / d r_x at r = 0 is the generator skew(e_x)
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(L.axis_angle_to_matrix, z)  # [3,3,3]
    gx = torch.tensor([[0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)
    assert torch.allclose(jac[..., 0], gx)


def test_zero_parameters_give_the_template(rand64: FlameLayer, demo64: FlameLayer):
    for layer in (rand64, demo64):
        out = layer()
        assert out.vertices.shape == (1, layer.n_vertices, 3)
        assert torch.allclose(out.vertices[0], layer.v_template, atol=1e-12)
        assert torch.allclose(out.joints[0], layer.J_regressor @ layer.v_template, atol=1e-12)


def test_identity_pose_lbs_equals_blend_shapes(rand64: FlameLayer):
    p = _params(3, rand64)
    out = rand64(shape=p["shape"], expression=p["expression"])
    coeffs = torch.cat([p["shape"], p["expression"]], 1)
    expect = rand64.v_template + torch.einsum("bk,vck->bvc", coeffs, rand64.shapedirs)
    assert torch.allclose(out.vertices, expect, atol=1e-12)


def test_global_rotation_and_translation_are_rigid(rand64: FlameLayer):
    p = _params(4, rand64)
    pose = torch.zeros(4, 15, dtype=torch.float64)
    pose[:, 3:] = p["pose"][:, 3:]  # neck/jaw/eyes arbitrary but the same in both calls
    rest = rand64(shape=p["shape"], expression=p["expression"], pose=pose)
    pose_g = pose.clone()
    pose_g[:, :3] = p["pose"][:, :3]
    moved = rand64(shape=p["shape"], expression=p["expression"], pose=pose_g, transl=p["transl"])
    r = L.axis_angle_to_matrix(p["pose"][:, :3])
    j0 = rest.joints[:, :1]
    expect = torch.einsum("bij,bvj->bvi", r, rest.vertices - j0) + j0 + p["transl"][:, None]
    assert torch.allclose(moved.vertices, expect, atol=1e-12)
    # rigid: pairwise distances unchanged
    def dist(x: torch.Tensor) -> torch.Tensor:
        return (x[:, :, None] - x[:, None]).norm(dim=-1)

    assert torch.allclose(dist(moved.vertices), dist(rest.vertices), atol=1e-12)


def test_batch_equals_single_calls(rand64: FlameLayer):
    p = _params(5, rand64)
    batch = rand64(**p)
    for i in range(5):
        one = rand64(**{k: v[i : i + 1] for k, v in p.items()})
        assert torch.allclose(batch.vertices[i], one.vertices[0], atol=1e-13)
        assert torch.allclose(batch.landmarks[i], one.landmarks[0], atol=1e-13)


@pytest.mark.parametrize("which", ["random", "demo"])
def test_landmarks_only_agrees_with_full_path(which: str, rand64: FlameLayer, demo64: FlameLayer):
    layer = rand64 if which == "random" else demo64
    p = _params(6, layer, seed=3, pose_scale=0.5)
    full = layer(**p).landmarks
    fast = layer.landmarks_only(**p)
    assert fast.shape == (6, layer.n_landmarks, 3)
    assert (full - fast).abs().max().item() < 1e-6
    assert (full - fast).abs().max().item() < 1e-12  # float64: equal up to rounding


def test_gradients_reach_every_parameter(rand64: FlameLayer, demo64: FlameLayer):
    for layer in (rand64, demo64):
        p = {k: v.clone().requires_grad_(True) for k, v in _params(2, layer, seed=4).items()}
        out = layer(**p)
        g = torch.Generator().manual_seed(9)
        loss = (out.vertices * torch.randn(out.vertices.shape, generator=g, dtype=torch.float64)).sum()
        loss = loss + out.landmarks.sum() + layer.landmarks_only(**p).square().sum()
        loss.backward()
        for name, t in p.items():
            assert t.grad is not None and torch.isfinite(t.grad).all(), name
            assert (t.grad.abs() > 0).all(), f"{name}: zero gradient at {torch.nonzero(t.grad == 0)[:5].tolist()}"


def test_gradients_at_zero_pose_are_finite(demo64: FlameLayer):
    pose = torch.zeros(2, 15, dtype=torch.float64, requires_grad=True)
    demo64.landmarks_only(pose=pose).sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0


def test_shape_errors_name_expected_and_actual(rand64: FlameLayer):
    with pytest.raises(ValueError, match=r"expression must have shape \[B, 100\], got \[2, 50\]"):
        rand64(expression=torch.zeros(2, 50, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"pose must have shape \[B, 15\], got \[2, 6\]"):
        rand64(pose=torch.zeros(2, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch sizes disagree: shape has B=2, transl has B=3"):
        rand64(shape=torch.zeros(2, 300, dtype=torch.float64), transl=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_expr=101"):
        FlameLayer.from_file(rand64.path, n_expr=101)


def test_fewer_components_and_batch_from_any_argument(rand_dir: Path):
    layer = FlameLayer.from_file(rand_dir / "model.npz", n_shape=10, n_expr=5, dtype=torch.float64)
    out = layer(transl=torch.zeros(7, 3, dtype=torch.float64))
    assert out.vertices.shape[0] == 7 and layer.shapedirs.shape[-1] == 15


def test_float32_matches_float64_and_dtype_moves(rand_dir: Path, rand64: FlameLayer):
    l32 = FlameLayer.from_file(rand_dir / "model.npz")
    p = _params(3, rand64)
    o64 = rand64(**p).vertices
    o32 = l32(**{k: v.float() for k, v in p.items()}).vertices
    assert o32.dtype == torch.float32 and (o32.double() - o64).abs().max() < 1e-5
    assert l32.double().v_template.dtype == torch.float64  # everything is a buffer


def test_compose_pose_places_parts():
    jaw = torch.ones(2, 3)
    p = compose_pose(jaw=jaw)
    assert p.shape == (2, 15) and p[:, 6:9].eq(1).all() and p[:, :6].eq(0).all() and p[:, 9:].eq(0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(rand64: FlameLayer):
    p = _params(4, rand64)
    gpu = FlameLayer.from_file(rand64.path, dtype=torch.float64).to("cuda")
    out = gpu(**{k: v.cuda() for k, v in p.items()})
    assert torch.allclose(out.vertices.cpu(), rand64(**p).vertices, atol=1e-10)
    assert torch.allclose(gpu.landmarks_only(**{k: v.cuda() for k, v in p.items()}).cpu(), rand64(**p).landmarks, atol=1e-10)
