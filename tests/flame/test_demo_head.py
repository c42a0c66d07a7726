"""The generated demo head: deterministic, labelled, and it moves like a face.

Coordinates: model space, metres, x toward the subject's left, y UP, z toward the camera. In an image
(y down) "moves down" is a decrease of model y.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flameqa.flame import FlameLayer
from flameqa.flame import lbs as L
from flameqa.flame.demo_head import DEMO_MODEL_ID, EXPRESSION_NAMES, build_demo_head
from flameqa.flame.embeddings import MEDIAPIPE_TO_IBUG68, eye_joint_sides

LOWER_LIP = [14, 17, 87, 317, 84, 314]
UPPER_LIP = [13, 0, 82, 312]
F64 = torch.float64


def _expr(name: str, value: float, n: int = 100) -> torch.Tensor:
    e = torch.zeros(1, n, dtype=F64)
    e[0, EXPRESSION_NAMES.index(name)] = value
    return e


def test_build_is_deterministic_and_labelled(demo_npz: Path, bundle_path: Path):
    a = build_demo_head()
    with np.load(demo_npz, allow_pickle=False) as z:
        for k in ("v_template", "shapedirs", "J_regressor", "weights", "f", "lmk_face_idx"):
            assert np.array_equal(a[k], z[k]), k
        assert str(z["model_id"]) == DEMO_MODEL_ID and "NOT FLAME" in str(z["note"])
    assert a["v_template"].shape == (478, 3) and a["shapedirs"].shape == (478, 3, 400) and a["posedirs"].shape == (478, 3, 36)
    assert a["J_regressor"].shape == (5, 478) and a["weights"].shape == (478, 5) and a["f"].shape == (906, 3)
    ext = a["v_template"].max(0) - a["v_template"].min(0)
    assert 0.12 < ext[0] < 0.2 and 0.15 < ext[1] < 0.22  # a face-sized mask, in metres


def test_from_file_demo_generates_into_the_model_cache(tmp_path: Path, bundle_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "face_landmarker").mkdir()
    (tmp_path / "face_landmarker" / "face_landmarker.task").symlink_to(bundle_path)
    monkeypatch.setenv("FLAMEQA_MODEL_DIR", str(tmp_path))
    layer = FlameLayer.from_file("demo", n_shape=50, n_expr=20)
    assert (tmp_path / DEMO_MODEL_ID / "demo_head.npz").is_file()
    assert layer.model_id == DEMO_MODEL_ID and layer.n_shape == 50 and layer.n_expr == 20
    assert layer.n_landmarks == 478 and torch.equal(layer.mp_indices, torch.arange(478))


def test_mediapipe_embedding_is_the_identity(demo64: FlameLayer):
    out = demo64(pose=0.2 * torch.ones(1, 15, dtype=F64), expression=torch.ones(1, 100, dtype=F64))
    assert torch.allclose(out.landmarks, out.vertices, atol=1e-15)


def test_bases_are_orthogonal_in_groups_and_free_of_rigid_motion(demo64: FlameLayer):
    s = demo64.shapedirs.reshape(-1, 400)
    for group in (s[:, :300], s[:, 300:]):  # identity, expression
        u = group / group.norm(dim=0)
        cos = u.T @ u - torch.eye(u.shape[1], dtype=F64)
        assert cos.abs().max() < 1e-5  # orthogonal up to float32 storage
    # identity variance is concentrated in the first, smoothest components
    norms = s[:, :300].norm(dim=0)
    assert (norms[1:] <= norms[:-1] * 1.0001).all() and norms[:10].square().sum() > 0.6 * norms.square().sum()
    # a blend shape cannot be undone by translating the head: translation fields are orthogonal
    v = demo64.v_template
    for c in range(3):
        t = torch.zeros_like(v)
        t[:, c] = 1
        assert (t.reshape(-1) @ s).abs().max() < 1e-8
    # the jaw rotation field is orthogonal too (jaw vs expression is identifiable)
    j = demo64.J_template[2]
    jaw_field = demo64.lbs_weights[:, 2:3] * torch.cross(torch.tensor([1.0, 0, 0], dtype=F64).expand_as(v), v - j, dim=1)
    assert (jaw_field.reshape(-1) @ s).abs().max() < 1e-8


def test_jaw_opening_moves_the_lower_lip_down(demo64: FlameLayer):
    rest = demo64().landmarks[0]
    pose = torch.zeros(1, 15, dtype=F64)
    pose[0, 6] = 0.3  # jaw, +x axis
    open_ = demo64(pose=pose).landmarks[0]
    dy = open_[:, 1] - rest[:, 1]
    assert (dy[LOWER_LIP] < -0.01).all(), dy[LOWER_LIP]  # > 1 cm down (model y up; image y down)
    assert dy[152] < -0.015  # chin
    assert dy[UPPER_LIP].abs().max() < 1e-4  # the upper lip stays
    assert (open_[14, 1] - open_[13, 1]) < (rest[14, 1] - rest[13, 1]) - 0.01  # the mouth opens


def test_blinks_close_the_eyelids(demo64: FlameLayer):
    rest = demo64().landmarks[0]
    for name, (up, lo), (oup, olo) in (("blink_left", (386, 374), (159, 145)), ("blink_right", (159, 145), (386, 374))):
        x = demo64(expression=_expr(name, 1.0)).landmarks[0]
        gap0 = rest[up, 1] - rest[lo, 1]
        assert gap0 > 0.004
        assert abs(x[up, 1] - x[lo, 1]) < 0.15 * gap0, name
        assert abs((x[oup, 1] - x[olo, 1]) - (rest[oup, 1] - rest[olo, 1])) < 0.05 * gap0, f"{name} moved the other eye"


def test_smile_raises_its_mouth_corner_and_brows_go_up(demo64: FlameLayer):
    rest = demo64().landmarks[0]
    smile = demo64(expression=_expr("smile_left", 1.0)).landmarks[0]
    assert smile[291, 1] - rest[291, 1] > 0.003 and smile[291, 0] - rest[291, 0] > 0.002  # left corner up and out
    assert abs(smile[61, 1] - rest[61, 1]) < 0.001
    brow = demo64(expression=_expr("brow_inner_up_left", 1.0)).landmarks[0]
    assert brow[336, 1] - rest[336, 1] > 0.003


def test_eye_joints_left_is_3_from_skinning_weights(demo64: FlameLayer):
    w = demo64.lbs_weights.numpy()
    sides = eye_joint_sides(w, left_eye_vertices=range(473, 478), right_eye_vertices=range(468, 473))
    assert sides == {"left": 3, "right": 4}
    assert demo64.eye_joint_side == {3: "left", 4: "right"}
    assert demo64.J_template[3, 0] > 0  # +x is the subject's left
    pose = torch.zeros(1, 15, dtype=F64)
    pose[0, 10] = 0.3  # joint 3 about +y: the left iris looks toward +x
    rest, moved = demo64().landmarks[0], demo64(pose=pose).landmarks[0]
    d = (moved - rest).norm(dim=1)
    assert (moved[473:478, 0] - rest[473:478, 0] > 0.002).all()
    assert d[:473].max() < 1e-12 and d[473:].min() > 0.002


def test_lmk68_is_ibug_order_contour_first(demo64: FlameLayer):
    out = demo64(expression=torch.randn(1, 100, dtype=F64, generator=torch.Generator().manual_seed(0)))
    assert out.landmarks68.shape == (1, 68, 3)
    assert torch.allclose(out.landmarks68[0, 17:], out.vertices[0, list(MEDIAPIPE_TO_IBUG68[17:])], atol=1e-15)
    assert out.landmarks68[0, 8, 1] < out.landmarks68[0, 17:, 1].min()  # iBUG 9 = chin, the lowest point


def _contour_vertices(layer: FlameLayer, pose: torch.Tensor) -> torch.Tensor:
    out = layer(pose=pose)
    rows = L.contour_rows(layer.head_yaw(out.rot_mats), layer.lmk68_yaw_sign)
    tri = layer.faces[layer.lmk68_dynamic_faces_idx[rows]]  # [B,17,3]
    return (tri * (layer.lmk68_dynamic_bary[rows] > 0.5)).sum(-1)  # one-hot → vertex ids


def test_contour_follows_head_yaw(demo64: FlameLayer):
    """A face turned left (about +y, nose toward the subject's left, +x) shows its right-hand side:
    the right-hand contour points (iBUG 1-8, x < 0) stay on the outer jaw line, while the left-hand
    ones (iBUG 10-17) move onto the cheek, which is now the silhouette. Turned right: the mirror."""
    v = demo64.v_template
    yaw = torch.zeros(3, 15, dtype=F64)
    yaw[1, 1], yaw[2, 1] = 0.45, -0.45  # global rotation about y: rest, turned left, turned right
    ids = _contour_vertices(demo64, yaw)
    front, left, right = ids
    z = v[:, 2]
    assert torch.equal(left[:8], front[:8]) and (z[left[9:16]] > z[front[9:16]] + 1e-3).sum() >= 4
    assert torch.equal(right[9:], front[9:]) and (z[right[1:8]] > z[front[1:8]] + 1e-3).sum() >= 4
    assert (v[front[:8], 0] < 0).all() and (v[front[9:], 0] > 0).all()
    # rows: file-yaw = −(head yaw in degrees) for this table; rows 0..39 hold 0..39°, 40..78 hold −1..−39°
    out = demo64(pose=yaw)
    assert L.contour_rows(demo64.head_yaw(out.rot_mats), -1.0).tolist() == [0, 39 + 26, 26]
    # the yaw is the neck chain's: turning the neck instead of the global joint selects the same rows
    neck = torch.zeros(3, 15, dtype=F64)
    neck[:, 4] = yaw[:, 1]
    assert torch.equal(_contour_vertices(demo64, neck), ids)
    # beyond ±39° the table's last row is used
    far = torch.zeros(1, 15, dtype=F64)
    far[0, 1] = 1.2
    assert L.contour_rows(demo64.head_yaw(demo64(pose=far).rot_mats), -1.0).item() == 78


def test_landmarks_only_float64_matches_and_float32_close(demo64: FlameLayer, demo32: FlameLayer):
    g = torch.Generator().manual_seed(1)
    p = {"shape": torch.randn(8, 300, generator=g, dtype=F64), "expression": torch.randn(8, 100, generator=g, dtype=F64),
         "pose": 0.3 * torch.randn(8, 15, generator=g, dtype=F64), "transl": torch.randn(8, 3, generator=g, dtype=F64)}  # fmt: skip
    full = demo64(**p).landmarks
    assert (demo64.landmarks_only(**p) - full).abs().max() < 1e-6
    assert (demo32.landmarks_only(**{k: t.float() for k, t in p.items()}).double() - full).abs().max() < 1e-5
