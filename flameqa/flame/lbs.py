"""Pure tensor math of a FLAME-style model: rotations, blend shapes, kinematic chain, skinning,
landmark interpolation.

No module state, no I/O, no logging: every function maps tensors to tensors and works for any float
dtype and device. Shape letters: B batch, V vertices, J joints, K blend-shape coefficients,
L landmarks, F faces. Units are the model's (metres for FLAME and the demo head); angles in radians.

Written from the published description of linear blend skinning with pose-corrective blend shapes
(see docs/FLAME.md in the shared docs); not derived from smplx/DECA code.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "axis_angle_to_matrix",
    "blend_shapes",
    "regress_joints",
    "pose_feature",
    "kinematic_chain",
    "skin",
    "lbs",
    "barycentric_gather",
    "euler_y",
    "contour_rows",
]

# Below this squared angle the Rodrigues coefficients switch to their Taylor series: both branches
# agree to float64 precision there, and the series keeps the gradient exact at the zero pose, where
# every fit starts.
_SMALL_ANGLE2 = 1e-6


def axis_angle_to_matrix(rotvec: Tensor) -> Tensor:
    """Rodrigues' formula: axis-angle vectors ``[..., 3]`` (radians) → rotation matrices ``[..., 3, 3]``.

    R = I + a·K + b·K², K = skew(r), a = sin θ / θ, b = (1 − cos θ) / θ², θ = |r|. Written with the
    unnormalized skew matrix so that the value and the gradient are exact at θ = 0 (no ``+eps``).
    """
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # [...,1,1]
    small = theta2 < _SMALL_ANGLE2
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe2.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0 + theta2 * theta2 / 120.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0 + theta2 * theta2 / 720.0, (1.0 - torch.cos(theta)) / safe2)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def blend_shapes(coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Linear blend-shape offsets.

    Args:
        coeffs: ``[B, K]`` coefficients (shape and expression concatenated, in ``dirs`` order).
        dirs: ``[V, 3, K]`` basis (model units per unit coefficient).

    Returns:
        ``[B, V, 3]`` offsets to add to the template.
    """
    # offsets[b, v, c] = sum_k coeffs[b, k] * dirs[v, c, k]   (as one GEMM on the (V·3, K) view:
    # einsum would copy the whole basis into a permuted layout on every call)
    v, c, k = dirs.shape
    return (coeffs @ dirs.reshape(v * c, k).T).reshape(-1, v, c)


def regress_joints(regressor: Tensor, vertices: Tensor) -> Tensor:
    """Joint locations from vertices: ``regressor [J, V]``, ``vertices [B, V, 3]`` → ``[B, J, 3]``."""
    # joints[b, j, c] = sum_v regressor[j, v] * vertices[b, v, c]
    return torch.matmul(regressor, vertices)


def pose_feature(rot_mats: Tensor) -> Tensor:
    """Pose-corrective input: ``(R_j − I)`` of every non-root joint, flattened.

    Args:
        rot_mats: ``[B, J, 3, 3]`` local joint rotations; joint 0 (global) is excluded because a rigid
            rotation of the whole head must not deform it.

    Returns:
        ``[B, (J − 1) · 9]`` (36 for FLAME), row-major per joint, matching ``posedirs [V, 3, 36]``.
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).flatten(1)


def kinematic_chain(rot_mats: Tensor, joints: Tensor, parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Compose local joint rotations along the tree.

    Args:
        rot_mats: ``[B, J, 3, 3]`` local rotations.
        joints: ``[B, J, 3]`` rest-pose joint locations.
        parents: parent index of each joint, ``parents[0] == -1``; every parent precedes its child.

    Returns:
        posed_joints ``[B, J, 3]``: joint locations after posing.
        transforms ``[B, J, 3, 4]``: per joint the rigid map ``x ↦ R·x + t`` taking a rest-pose point
        to its posed location when it moves fully with that joint (what skinning blends).
    """
    world_r: list[Tensor] = []
    world_t: list[Tensor] = []
    for j, p in enumerate(parents):
        if p < 0:
            world_r.append(rot_mats[:, j])
            world_t.append(joints[:, j])
        else:
            # child frame = parent frame ∘ (rotation about the child joint at its rest offset)
            offset = joints[:, j] - joints[:, p]  # [B,3]
            world_r.append(world_r[p] @ rot_mats[:, j])
            world_t.append(world_t[p] + (world_r[p] @ offset[..., None])[..., 0])
    r = torch.stack(world_r, dim=1)  # [B,J,3,3]
    posed = torch.stack(world_t, dim=1)  # [B,J,3]
    # Remove the rest location: a rest point x moves to R (x − j_rest) + j_posed.
    t = posed - (r @ joints[..., None])[..., 0]
    return posed, torch.cat([r, t[..., None]], dim=-1)


def skin(vertices: Tensor, weights: Tensor, transforms: Tensor) -> Tensor:
    """Linear blend skinning.

    Args:
        vertices: ``[B, V, 3]`` rest-pose (shaped and pose-corrected) vertices.
        weights: ``[V, J]`` skinning weights, rows summing to 1.
        transforms: ``[B, J, 3, 4]`` from :func:`kinematic_chain`.

    Returns:
        ``[B, V, 3]`` posed vertices.
    """
    b, j = transforms.shape[:2]
    # per-vertex blended transform: T[b, v, r, c] = sum_j weights[v, j] * transforms[b, j, r, c]
    t = torch.matmul(weights, transforms.reshape(b, j, 12)).reshape(b, -1, 3, 4)
    # posed[b, v, r] = sum_c T[b, v, r, c] * x[b, v, c] + T[b, v, r, 3]
    return (t[..., :3] * vertices[:, :, None, :]).sum(-1) + t[..., 3]


def lbs(
    coeffs: Tensor,
    pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor,
    j_regressor: Tensor,
    weights: Tensor,
    parents: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """Full forward: blend shapes → joints → pose correctives → kinematic chain → skinning.

    Args:
        coeffs: ``[B, K]`` shape+expression coefficients.
        pose: ``[B, J, 3]`` axis-angle per joint (radians).
        v_template: ``[V, 3]``; shapedirs ``[V, 3, K]``; posedirs ``[V, 3, 9(J−1)]``;
        j_regressor: ``[J, V]``; weights ``[V, J]``; parents: J ints.

    Returns:
        vertices ``[B, V, 3]``, posed joints ``[B, J, 3]``, rotation matrices ``[B, J, 3, 3]``.
    """
    v_shaped = v_template + blend_shapes(coeffs, shapedirs)
    joints = regress_joints(j_regressor, v_shaped)
    rot = axis_angle_to_matrix(pose)
    # offsets[b, v, c] = sum_p feature[b, p] * posedirs[v, c, p]
    v_posed = v_shaped + blend_shapes(pose_feature(rot), posedirs)
    posed_joints, transforms = kinematic_chain(rot, joints, parents)
    return skin(v_posed, weights, transforms), posed_joints, rot


def barycentric_gather(vertices: Tensor, faces: Tensor, face_idx: Tensor, bary: Tensor) -> Tensor:
    """Points inside mesh triangles.

    Args:
        vertices: ``[B, V, 3]``.
        faces: ``[F, 3]`` vertex indices.
        face_idx: ``[L]`` (shared) or ``[B, L]`` (per sample, e.g. the yaw-dependent contour).
        bary: ``[L, 3]`` or ``[B, L, 3]`` barycentric weights of the triangle corners.

    Returns:
        ``[B, L, 3]``.
    """
    tri = faces[face_idx]  # [L,3] or [B,L,3] vertex ids
    if tri.dim() == 2:
        corners = vertices[:, tri]  # [B,L,3(corner),3(xyz)]
    else:
        b = torch.arange(vertices.shape[0], device=vertices.device)[:, None, None]
        corners = vertices[b, tri]
    if bary.dim() == 2:
        bary = bary.expand(vertices.shape[0], -1, -1)
    # point[b, l, c] = sum_k bary[b, l, k] * corners[b, l, k, c]
    return torch.einsum("blk,blkc->blc", bary, corners)


def euler_y(rot: Tensor) -> Tensor:
    """Rotation about the vertical (y) axis of ``rot [..., 3, 3]`` in radians, in (−π/2, π/2).

    For R = R_y(ψ)·(rotations about x, z) the angle is atan2(−R[2,0], sqrt(R[0,0]² + R[1,0]²)).
    Positive ψ turns the face (+z) toward +x, i.e. toward the subject's own left.
    """
    return torch.atan2(-rot[..., 2, 0], torch.sqrt(rot[..., 0, 0] ** 2 + rot[..., 1, 0] ** 2))


def contour_rows(yaw: Tensor, sign: float = -1.0, max_deg: int = 39) -> Tensor:
    """Row of a ``[2·max_deg + 1, 17]`` dynamic-contour table for each head yaw.

    The RingNet/FLAME table stores rows 0..39 for file-yaw 0..39° and rows 40..78 for file-yaw
    −1..−39°. File-yaw = ``sign`` × :func:`euler_y` in degrees, rounded and clamped to ±max_deg.

    Args:
        yaw: ``[B]`` radians (see :func:`euler_y`).
        sign: the table's yaw sign convention (−1 for RingNet's ``flame_dynamic_embedding.npy``).

    Returns:
        ``[B]`` long row indices.
    """
    deg = torch.round(torch.rad2deg(yaw.detach()) * sign).clamp(-max_deg, max_deg).long()
    return torch.where(deg >= 0, deg, max_deg - deg)
