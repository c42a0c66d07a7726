"""The landmark model: exact Jacobians, gradients without Jacobians, agreement with the FLAME layer,
and the banded solver."""

from __future__ import annotations

import pytest
import torch

from flameqa.fit.model import EXPR, TRANSL, LandmarkModel, rodrigues, rodrigues_with_jacobian
from flameqa.fit.solver import banded_cholesky, banded_solve
from tests.fit.toy import toy_arrays


def _frame_diag(jac_full: torch.Tensor, b: int, t: int) -> torch.Tensor:
    """Pick d out[b, t] / d in[b, t] from a full jacrev ``[B, T, ..., B, T, P]``."""
    return torch.stack([torch.stack([jac_full[i, j, ..., i, j, :] for j in range(t)]) for i in range(b)])


@pytest.mark.parametrize("one_hot", [False, True])
def test_jacobians_match_autograd(one_hot):
    torch.manual_seed(0)
    m = LandmarkModel.from_arrays(**toy_arrays(one_hot=one_hot), dtype=torch.float64)
    assert m.has_posedirs and m.n_pairs > 0
    b, t = 2, 3
    beta = torch.randn(b, m.n_shape, dtype=torch.float64)
    x = torch.randn(b, t, m.n_params, dtype=torch.float64) * 0.2
    x[..., TRANSL:TRANSL + 3] = torch.tensor([0.01, -0.02, -0.6], dtype=torch.float64)
    intr = torch.tensor([[500.0, 256, 256], [400, 200, 210]], dtype=torch.float64)
    ev = m.evaluate(m.shape_state(beta), x, intr, derivatives=True)
    ref_x = _frame_diag(torch.func.jacrev(lambda xx: m.project(beta, xx, intr))(x), b, t)
    torch.testing.assert_close(m.jacobian(ev), ref_x, rtol=1e-9, atol=1e-8)
    ref_b = torch.func.jacrev(lambda bb: m.project(bb, x, intr))(beta)
    ref_b = torch.stack([ref_b[i, ..., i, :] for i in range(b)])
    torch.testing.assert_close(m.shape_jacobian(ev), ref_b, rtol=1e-9, atol=1e-10)
    # gradients as pullbacks of per-landmark covectors, without forming J
    v = torch.randn(b, t, m.n_landmarks, 2, dtype=torch.float64)
    cov = (ev.dp * v[..., None]).sum(-2)
    torch.testing.assert_close(m.pullback(ev, cov), torch.einsum("btlrp,btlr->btp", ref_x, v), rtol=1e-9, atol=1e-7)
    torch.testing.assert_close(m.shape_pullback(ev, cov), torch.einsum("btlrs,btlr->bs", ref_b, v), rtol=1e-9, atol=1e-9)
    # a landmark subset evaluates the same rows
    rows = torch.arange(0, m.n_landmarks, 3)
    torch.testing.assert_close(m.subset(rows).project(beta, x, intr), m.project(beta, x, intr)[:, :, rows])


def test_rodrigues_left_jacobian():
    torch.manual_seed(1)
    for scale in (1e-5, 1e-2, 1.0, 3.0):
        r = torch.randn(20, 3, dtype=torch.float64)
        r = r / r.norm(dim=-1, keepdim=True) * torch.rand(20, 1, dtype=torch.float64) * scale
        rot, jl = rodrigues_with_jacobian(r)
        d = torch.func.vmap(torch.func.jacfwd(rodrigues))(r)  # [N,3,3,3i]
        # ∂R/∂r_i Rᵀ = skew(J_l e_i)
        g = torch.einsum("nabi,ncb->naci", d, rot)
        vee = torch.stack([g[:, 2, 1], g[:, 0, 2], g[:, 1, 0]], dim=1)  # [N,3,3i]
        torch.testing.assert_close(vee, jl, rtol=1e-8, atol=1e-10)


def test_matches_flame_layer(demo_layer):
    """Landmarks of the restricted model equal the layer's, FLAME translation convention included."""
    m = LandmarkModel.from_layer(demo_layer, dtype=torch.float64)
    layer = demo_layer.double()
    torch.manual_seed(0)
    b, t = 2, 4
    beta = torch.randn(b, m.n_shape, dtype=torch.float64)
    x = torch.randn(b, t, m.n_params, dtype=torch.float64) * 0.2
    x[..., TRANSL:TRANSL + 3] += torch.tensor([0.0, 0.0, -0.5], dtype=torch.float64)
    pose = torch.cat([x[..., 0:3], torch.zeros_like(x[..., 0:3]), x[..., 6:15]], -1).reshape(b * t, 15)
    ref = layer.landmarks_only(
        shape=beta[:, None].expand(b, t, -1).reshape(b * t, -1), expression=x[..., EXPR:].reshape(b * t, -1),
        pose=pose, transl=x[..., TRANSL:TRANSL + 3].reshape(b * t, 3),
    ).reshape(b, t, -1, 3)
    xi = x.clone()
    xi[..., TRANSL:TRANSL + 3] = m.internal_transl(beta, x)
    pts = m.camera_points(beta, xi)
    order = m.mp_indices  # model rows are reordered (skinned landmarks first)
    row_of = {int(mp): i for i, mp in enumerate(layer.mp_indices.tolist())}
    ref = ref[:, :, [row_of[int(i)] for i in order]]
    torch.testing.assert_close(pts, ref, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(m.flame_transl(beta, xi), x[..., TRANSL:TRANSL + 3])
    demo_layer.float()


def test_banded_solver_matches_dense():
    torch.manual_seed(0)
    b, t, p = 3, 11, 5
    a = torch.randn(b, t, p, p, dtype=torch.float64)
    d = a @ a.transpose(-1, -2) + 3 * torch.eye(p, dtype=torch.float64)
    c1 = torch.randn(b, t - 1, p, dtype=torch.float64)
    c2 = torch.randn(b, t - 2, p, dtype=torch.float64) * 0.5
    h = torch.zeros(b, t * p, t * p, dtype=torch.float64)
    for k in range(t):
        h[:, k * p:(k + 1) * p, k * p:(k + 1) * p] = d[:, k]
    for off, c in ((1, c1), (2, c2)):
        for k in range(t - off):
            blk = torch.diag_embed(c[:, k])
            h[:, (k + off) * p:(k + off + 1) * p, k * p:(k + 1) * p] = blk
            h[:, k * p:(k + 1) * p, (k + off) * p:(k + off + 1) * p] = blk
    assert torch.linalg.eigvalsh(h).min() > 0
    rhs = torch.randn(b, t, p, dtype=torch.float64)
    fac, info = banded_cholesky(d, c1, c2)
    assert not info.any()
    ref = torch.linalg.solve(h, rhs.reshape(b, -1, 1)).reshape(b, t, p)
    torch.testing.assert_close(banded_solve(fac, rhs), ref, rtol=1e-10, atol=1e-10)


def test_import_flameqa_stays_light():
    import subprocess
    import sys

    code = "import sys, flameqa, flameqa.fit.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
