"""The FLAME layer: a ``torch.nn.Module`` holding a FLAME-format model as buffers.

Every fixed array is a buffer (``.to(device)``, ``.double()`` and ``state_dict`` just work); the caller
owns all parameters and passes them per call as ``[B, ...]`` tensors. Two paths:

- ``layer(...)`` → :class:`FlameOutput`: the full mesh, joints, MediaPipe landmarks and (when an
  embedding is loaded) the 68 iBUG landmarks with the yaw-dependent jaw-line contour.
- ``layer.landmarks_only(...)``: only the vertices the MediaPipe embedding touches, with the joint
  regression folded into precomputed ``[J, 3, K]`` tensors — what a fitter evaluates per iteration.

Coordinates and units are the model file's: metres, x toward the subject's left, y up, z out of the
face. Angles are axis-angle radians.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from flameqa.flame import lbs as L
from flameqa.flame.io import (
    LMK68_EMBEDDING_NAMES,
    MEDIAPIPE_EMBEDDING_NAMES,
    FlameFileError,
    FlameModelData,
    Lmk68Embedding,
    MediaPipeEmbedding,
    find_next_to,
    load_lmk68_embedding,
    load_mediapipe_embedding,
    load_model,
)

log = logging.getLogger(__name__)

__all__ = ["FlameLayer", "FlameOutput", "compose_pose", "resolve_model_path"]


@dataclass
class FlameOutput:
    """Result of :meth:`FlameLayer.forward` (model units: metres).

    Attributes:
        vertices: ``[B, V, 3]`` posed, translated mesh.
        joints: ``[B, J, 3]`` posed joint locations (J = 5: global, neck, jaw, joint 3, joint 4).
        landmarks: ``[B, L, 3]`` MediaPipe-set landmarks (row i is MediaPipe landmark
            ``layer.mp_indices[i]``), or None when no MediaPipe embedding is loaded.
        landmarks68: ``[B, 68, 3]`` iBUG-68 in iBUG order (17 contour, then 51 static), or None.
        rot_mats: ``[B, J, 3, 3]`` local joint rotations.
    """

    vertices: Tensor
    joints: Tensor
    landmarks: Tensor | None
    landmarks68: Tensor | None
    rot_mats: Tensor


def compose_pose(
    global_rot: Tensor | None = None,
    neck: Tensor | None = None,
    jaw: Tensor | None = None,
    eyes: Tensor | None = None,
    *,
    batch: int | None = None,
) -> Tensor:
    """Build the ``[B, 15]`` pose from parts (``[B, 3]`` each, ``eyes [B, 6]`` = joint 3 then joint 4);
    missing parts are zeros. DECA's ``[B, 6]`` pose is ``compose_pose(p[:, :3], jaw=p[:, 3:])``."""
    parts = [global_rot, neck, jaw, eyes]
    ref = next((p for p in parts if p is not None), None)
    b = batch if batch is not None else (ref.shape[0] if ref is not None else 1)
    kw = {"dtype": ref.dtype, "device": ref.device} if ref is not None else {}
    sizes = (3, 3, 3, 6)
    return torch.cat([p if p is not None else torch.zeros(b, n, **kw) for p, n in zip(parts, sizes)], dim=1)


def resolve_model_path(path: str | os.PathLike) -> Path:
    """``"demo"`` → the cached demo head (generated on first use); anything else → that path."""
    if str(path) == "demo":
        from flameqa.flame.demo_head import ensure_demo_head

        return ensure_demo_head()
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"FLAME model file {p} not found. FLAME is licensed and never shipped: download it from "
            "flame.is.tue.mpg.de and pass its path, or use 'demo' for the generated demo head (not FLAME)."
        )
    return p


class FlameLayer(nn.Module):
    """FLAME-format model as a module of buffers.

    Args:
        data: arrays from :func:`flameqa.flame.io.load_model` (embeddings attached or not).
        n_shape: identity components used (≤ the file's, 300 for FLAME).
        n_expr: expression components used (≤ the file's, 100 for FLAME).
        dtype: float dtype of every float buffer.

    Attributes:
        model_id, note, license_note, n_shape, n_expr, n_joints, parents (LongTensor ``[J]``),
        faces (LongTensor ``[F, 3]``), mp_indices (LongTensor ``[L]``), lmk_faces_idx ``[L]``,
        lmk_bary ``[L, 3]``, joint_names, eye_joint_side ({3: "left"|"right", 4: ...} from the joints'
        rest positions: "left" is the subject's left, +x).
    """

    # declared for type checkers; registered as buffers in __init__
    v_template: Tensor
    shapedirs: Tensor
    posedirs: Tensor
    J_regressor: Tensor
    lbs_weights: Tensor
    faces: Tensor
    parents: Tensor
    lmk_faces_idx: Tensor
    lmk_bary: Tensor
    mp_indices: Tensor

    def __init__(self, data: FlameModelData, n_shape: int = 300, n_expr: int = 100, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not 0 <= n_shape <= data.n_shape_file:
            raise ValueError(f"n_shape={n_shape}: {data.path or data.model_id} has {data.n_shape_file} shape components")
        if not 0 <= n_expr <= data.n_expr_file:
            raise ValueError(f"n_expr={n_expr}: {data.path or data.model_id} has {data.n_expr_file} expression components")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a float dtype, got {dtype}")
        self.model_id = data.model_id
        self.note = data.note
        self.license_note = data.license_note
        self.path = data.path
        self.n_shape = n_shape
        self.n_expr = n_expr
        self.joint_names = tuple(data.joint_names)
        self._parents = tuple(int(p) for p in data.parents)
        self.n_joints = len(self._parents)

        def f(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.ascontiguousarray(a)).to(dtype)

        sd = np.concatenate([data.shapedirs[:, :, :n_shape], data.shapedirs[:, :, data.n_shape_file : data.n_shape_file + n_expr]], 2)
        self.register_buffer("v_template", f(data.v_template))
        self.register_buffer("shapedirs", f(sd))
        self.register_buffer("posedirs", f(data.posedirs))
        self.register_buffer("J_regressor", f(data.j_regressor))
        self.register_buffer("lbs_weights", f(data.weights))
        self.register_buffer("faces", torch.as_tensor(data.faces, dtype=torch.long))
        self.register_buffer("parents", torch.as_tensor(self._parents, dtype=torch.long))
        # Joint regression folded through the blend shapes, for the landmark-only path:
        # J_template[j, c] = sum_v R[j, v] T[v, c];  J_dirs[j, c, k] = sum_v R[j, v] S[v, c, k]
        jt = data.j_regressor.astype(np.float64) @ data.v_template.astype(np.float64)
        jd = np.einsum("jv,vck->jck", data.j_regressor.astype(np.float64), sd.astype(np.float64))
        self.register_buffer("J_template", f(jt))
        self.register_buffer("J_dirs", f(jd))
        x_rest = jt[:, 0]
        self.eye_joint_side = {j: ("left" if x_rest[j] > 0 else "right") for j in range(3, self.n_joints)}

        self.has_mediapipe = data.mediapipe is not None
        mp = data.mediapipe or MediaPipeEmbedding(np.zeros(0, np.int64), np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
        self.register_buffer("lmk_faces_idx", torch.as_tensor(mp.face_idx, dtype=torch.long))
        self.register_buffer("lmk_bary", f(mp.bary))
        self.register_buffer("mp_indices", torch.as_tensor(mp.mp_indices, dtype=torch.long))
        # Landmark-only path: the vertices the embedding touches, and its triangles re-indexed into them.
        tri = data.faces[mp.face_idx] if mp.face_idx.size else np.zeros((0, 3), np.int64)
        used, local = np.unique(tri, return_inverse=True)
        self.register_buffer("lmk_vertex_ids", torch.as_tensor(used, dtype=torch.long))
        self.register_buffer("lmk_tri_local", torch.as_tensor(local.reshape(-1, 3), dtype=torch.long))
        # ... and the model restricted to those vertices, gathered once rather than per call
        self.register_buffer("lmk_v_template", f(data.v_template[used]))
        self.register_buffer("lmk_shapedirs", f(sd[used]))
        self.register_buffer("lmk_posedirs", f(data.posedirs[used]))
        self.register_buffer("lmk_weights", f(data.weights[used]))

        self.has_lmk68 = data.lmk68 is not None
        if data.lmk68 is not None:
            e = data.lmk68
            self.lmk68_yaw_sign = float(e.yaw_sign)
            self.register_buffer("lmk68_static_faces_idx", torch.as_tensor(e.static_face_idx, dtype=torch.long))
            self.register_buffer("lmk68_static_bary", f(e.static_bary))
            self.register_buffer("lmk68_dynamic_faces_idx", torch.as_tensor(e.dynamic_face_idx, dtype=torch.long))
            self.register_buffer("lmk68_dynamic_bary", f(e.dynamic_bary))

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        n_shape: int = 300,
        n_expr: int = 100,
        dtype: torch.dtype = torch.float32,
        *,
        mediapipe_embedding: str | os.PathLike | None = None,
        lmk68_embedding: str | os.PathLike | None = None,
    ) -> "FlameLayer":
        """Load a model file (``.pkl`` official FLAME, ``.npz``) or ``"demo"``.

        Landmark embeddings: taken from the model file when it carries them (the demo head does),
        else from the given paths, else looked up next to the model file
        (``mediapipe_landmark_embedding.npz``; ``landmark_embedding.npy`` or
        ``flame_static_embedding.pkl`` + ``flame_dynamic_embedding.npy``).
        """
        p = resolve_model_path(path)
        data = load_model(p)
        if mediapipe_embedding is not None or data.mediapipe is None:
            mp_path = Path(mediapipe_embedding) if mediapipe_embedding is not None else find_next_to(p, MEDIAPIPE_EMBEDDING_NAMES)
            if mp_path is not None:
                data.mediapipe = load_mediapipe_embedding(mp_path, data.faces, n_vertices=data.n_vertices)
            else:
                log.warning(
                    "%s: no MediaPipe landmark embedding (mediapipe_landmark_embedding.npz) in or next to the model: "
                    "out.landmarks will be None and landmarks_only() unavailable", p
                )
        if lmk68_embedding is not None or data.lmk68 is None:
            l68 = Path(lmk68_embedding) if lmk68_embedding is not None else find_next_to(p, LMK68_EMBEDDING_NAMES)
            if l68 is not None:
                data.lmk68 = load_lmk68_embedding(l68, data.faces)
        return cls(data, n_shape=n_shape, n_expr=n_expr, dtype=dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.v_template.dtype

    @property
    def device(self) -> torch.device:
        return self.v_template.device

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_landmarks(self) -> int:
        return int(self.lmk_faces_idx.shape[0])

    def extra_repr(self) -> str:
        return (
            f"model_id={self.model_id!r}, V={self.n_vertices}, n_shape={self.n_shape}, n_expr={self.n_expr}, "
            f"L={self.n_landmarks}, lmk68={self.has_lmk68}, dtype={self.dtype}"
        )

    # ------------------------------------------------------------------------------------------
    def _inputs(
        self, shape: Tensor | None, expression: Tensor | None, pose: Tensor | None, transl: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Check every given tensor once; fill missing ones with zeros. Returns coeffs ``[B, K]``,
        pose ``[B, J, 3]``, transl ``[B, 3]`` in the layer's dtype."""
        spec = {
            "shape": (shape, self.n_shape),
            "expression": (expression, self.n_expr),
            "pose": (pose, 3 * self.n_joints),
            "transl": (transl, 3),
        }
        batch: int | None = None
        first = ""
        for name, (t, n) in spec.items():
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor of shape [B, {n}], got {type(t).__name__}")
            if t.dim() != 2 or t.shape[1] != n:
                raise ValueError(f"{name} must have shape [B, {n}], got {list(t.shape)}")
            if batch is None:
                batch, first = t.shape[0], name
            elif t.shape[0] != batch:
                raise ValueError(f"batch sizes disagree: {first} has B={batch}, {name} has B={t.shape[0]}")
            if t.device != self.device:
                raise ValueError(f"{name} is on {t.device}, the layer on {self.device}: move one of them")
        b = batch if batch is not None else 1
        kw = {"dtype": self.dtype, "device": self.device}

        def get(t: Tensor | None, n: int) -> Tensor:
            return torch.zeros(b, n, **kw) if t is None else t.to(self.dtype)

        coeffs = torch.cat([get(shape, self.n_shape), get(expression, self.n_expr)], dim=1)
        return coeffs, get(pose, 3 * self.n_joints).reshape(b, self.n_joints, 3), get(transl, 3)

    def forward(
        self,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        pose: Tensor | None = None,
        transl: Tensor | None = None,
    ) -> FlameOutput:
        """Full mesh forward.

        Args:
            shape: ``[B, n_shape]`` identity coefficients (unit ≈ one standard deviation).
            expression: ``[B, n_expr]``.
            pose: ``[B, 15]`` axis-angle (radians) of global, neck, jaw, joint 3, joint 4.
            transl: ``[B, 3]`` metres, added last.
        Missing arguments are zeros; B comes from the given tensors, which must agree.
        """
        coeffs, pose3, transl = self._inputs(shape, expression, pose, transl)
        verts, joints, rot = L.lbs(
            coeffs, pose3, self.v_template, self.shapedirs, self.posedirs, self.J_regressor, self.lbs_weights, self._parents
        )
        verts = verts + transl[:, None]
        joints = joints + transl[:, None]
        lmk = L.barycentric_gather(verts, self.faces, self.lmk_faces_idx, self.lmk_bary) if self.has_mediapipe else None
        lmk68 = self._landmarks68(verts, rot) if self.has_lmk68 else None
        return FlameOutput(vertices=verts, joints=joints, landmarks=lmk, landmarks68=lmk68, rot_mats=rot)

    def head_yaw(self, rot_mats: Tensor) -> Tensor:
        """Yaw (radians, + = face turned toward the subject's left) of the head relative to the
        camera-facing rest pose: the y-Euler angle of R_global · R_neck. ``[B, J, 3, 3]`` → ``[B]``."""
        return L.euler_y(rot_mats[:, 0] @ rot_mats[:, 1])

    def _landmarks68(self, verts: Tensor, rot: Tensor) -> Tensor:
        rows = L.contour_rows(self.head_yaw(rot), sign=self.lmk68_yaw_sign)  # [B]
        dyn_f = self.lmk68_dynamic_faces_idx[rows]  # [B,17]
        dyn_b = self.lmk68_dynamic_bary[rows]  # [B,17,3]
        contour = L.barycentric_gather(verts, self.faces, dyn_f, dyn_b)
        static = L.barycentric_gather(verts, self.faces, self.lmk68_static_faces_idx, self.lmk68_static_bary)
        return torch.cat([contour, static], dim=1)  # iBUG order: jaw line 1-17, then 18-68

    def landmarks_only(
        self,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        pose: Tensor | None = None,
        transl: Tensor | None = None,
    ) -> Tensor:
        """MediaPipe-set landmarks ``[B, L, 3]`` evaluating only the embedded triangles' vertices.

        Same arguments and result as ``forward(...).landmarks`` (equal up to float rounding), at a
        fraction of the cost: joints come from the precomputed ``J_template``/``J_dirs``.
        """
        if not self.has_mediapipe:
            raise RuntimeError(f"{self.model_id}: no MediaPipe landmark embedding loaded; pass mediapipe_embedding= to from_file")
        coeffs, pose3, transl = self._inputs(shape, expression, pose, transl)
        v = self.lmk_v_template + L.blend_shapes(coeffs, self.lmk_shapedirs)  # [B,U,3]
        # joints[b, j, c] = J_template[j, c] + sum_k coeffs[b, k] * J_dirs[j, c, k]
        joints = self.J_template + L.blend_shapes(coeffs, self.J_dirs)
        rot = L.axis_angle_to_matrix(pose3)
        v = v + L.blend_shapes(L.pose_feature(rot), self.lmk_posedirs)
        _, transforms = L.kinematic_chain(rot, joints, self._parents)
        v = L.skin(v, self.lmk_weights, transforms) + transl[:, None]
        # point[b, l, c] = sum_k bary[l, k] * v[b, tri_local[l, k], c]
        return torch.einsum("lk,blkc->blc", self.lmk_bary, v[:, self.lmk_tri_local])
