"""Head pose angles from MediaPipe's facial transformation matrix.

MediaPipe's canonical face looks down the camera's -z axis with x to the image right and y up;
the matrix maps canonical-face coordinates (cm) to camera space, so its 3×3 block is the head
rotation (times a uniform scale, removed here). A frontal face gives the identity.
"""

from __future__ import annotations

import numpy as np


def head_angles(transform: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll in degrees ``[..., 3]`` from transforms ``[..., 4, 4]`` (NaN stays NaN).

    Decomposition R = Ry(yaw) · Rx(pitch) · Rz(roll) (y up: yaw turns the head left/right).
    """
    r = np.asarray(transform, np.float64)[..., :3, :3]
    # remove the uniform scale: each column of a scaled rotation has the same norm
    s = np.linalg.norm(r[..., :, 0], axis=-1)[..., None, None]
    r = r / np.where(s > 0, s, np.nan)
    # R = Ry Rx Rz: R[1,2] = -sin(pitch); R[0,2] = sin(yaw)cos(pitch); R[2,2] = cos(yaw)cos(pitch);
    # R[1,0] = cos(pitch)sin(roll); R[1,1] = cos(pitch)cos(roll)
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """``[4, 4]`` transform with R = Ry(yaw) · Rx(pitch) · Rz(roll), angles in degrees (tests, docs)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = ry @ rx @ rz
    return m
