"""The fit's camera: a pinhole with one focal length per video, in MediaPipe's (OpenGL) convention.

Camera frame: x right, y up, the camera looks down −z (a face in front of it has z < 0), as in
MediaPipe's facial transformation matrix. Pixels: u right, v down, principal point at the image
centre by default.

    u = cx + f · x / (−z)        v = cy − f · y / (−z)

Why a fixed focal rather than one estimated per video: from ~100–480 landmarks of one face at
0.3–3 m the focal length and the face's distance trade off almost exactly (the perspective
distortion of a 20 cm deep head is a few tenths of a pixel), so an estimated focal wanders with the
noise and drags depth and identity scale with it. We use MediaPipe's own camera — a 63° vertical
field of view — so the transformation matrices that seed the fit agree with it, and record it in the
output ``camera`` JSON. A known focal (calibrated camera) can be given in the config instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

#: MediaPipe face-geometry camera: vertical field of view, degrees.
MEDIAPIPE_VFOV_DEG = 63.0


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of one video (pixels). ``focal_px`` applies to both axes (square pixels)."""

    focal_px: float
    cx: float
    cy: float
    width: int
    height: int
    model: str = "pinhole"
    convention: str = "opengl"
    """x right, y up, camera looking down −z; pixel v grows downward."""
    source: str = "vfov"
    """How the focal was chosen: ``vfov`` (from a field of view) or ``config`` (given)."""
    vfov_deg: float | None = None

    @classmethod
    def from_vfov(cls, width: int, height: int, vfov_deg: float = MEDIAPIPE_VFOV_DEG) -> PinholeCamera:
        f = 0.5 * height / math.tan(math.radians(vfov_deg) / 2)
        return cls(float(f), width / 2.0, height / 2.0, int(width), int(height), source="vfov", vfov_deg=float(vfov_deg))

    @classmethod
    def from_focal(cls, width: int, height: int, focal_px: float) -> PinholeCamera:
        return cls(float(focal_px), width / 2.0, height / 2.0, int(width), int(height), source="config")

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)

    def intrinsics(self) -> tuple[float, float, float]:
        return self.focal_px, self.cx, self.cy


def project(points: Tensor, intr: Tensor) -> Tensor:
    """Project camera-frame points to pixels.

    Args:
        points: ``[..., 3]`` camera frame (z < 0 in front of the camera).
        intr: ``[..., 3]`` (focal, cx, cy) broadcastable to ``points``' leading dims.

    Returns:
        ``[..., 2]`` pixels (u, v).
    """
    f, cx, cy = intr.unbind(-1)
    depth = (-points[..., 2]).clamp_min(1e-6)
    u = cx + f * points[..., 0] / depth
    v = cy - f * points[..., 1] / depth
    return torch.stack([u, v], dim=-1)


def project_with_jacobian(points: Tensor, intr: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels and their derivative with respect to the camera-frame point.

    Args:
        points: ``[..., 3]``; intr: ``[..., 3]`` (focal, cx, cy), broadcastable.

    Returns:
        uv ``[..., 2]`` and ``d(uv)/d(xyz)`` ``[..., 2, 3]``. Points behind the camera are clamped to a
        depth of 1e-6 (the solver never starts there: it is seeded in front of the camera).
    """
    f, cx, cy = intr.unbind(-1)
    x, y, z = points.unbind(-1)
    depth = (-z).clamp_min(1e-6)
    inv = 1.0 / depth
    fi = f * inv
    u = cx + fi * x
    v = cy - fi * y
    zero = torch.zeros_like(x)
    # du/dz = f·x/depth², dv/dz = −f·y/depth² (depth = −z)
    du = torch.stack([fi, zero, fi * x * inv], dim=-1)
    dv = torch.stack([zero, -fi, -fi * y * inv], dim=-1)
    return torch.stack([u, v], dim=-1), torch.stack([du, dv], dim=-2)
