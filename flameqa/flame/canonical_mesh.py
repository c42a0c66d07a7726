"""MediaPipe's canonical face mesh, read from the FaceLandmarker bundle.

The bundle ``face_landmarker.task`` is a zip; its member ``geometry_pipeline_metadata_landmarks.binarypb``
(possibly inside a nested zip member) is a ``GeometryPipelineMetadata`` protobuf whose
``canonical_mesh`` (field 1) is a ``Mesh3d``: ``vertex_type`` (1), ``primitive_type`` (2),
``vertex_buffer`` (3, floats: x, y, z, u, v per vertex, in cm) and ``index_buffer`` (4, uint32 triangle
corners). We decode that with a minimal protobuf wire-format reader (no protobuf dependency, no
generated code). The mesh is Apache-2.0 (Google).

Coordinates: x toward the subject's left, y up, z out of the face (toward a camera in front); the
origin is inside the head behind the nose, as MediaPipe's facial transformation matrix expects.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CanonicalMesh", "read_canonical_mesh", "default_bundle_path"]

_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"


@dataclass(frozen=True)
class CanonicalMesh:
    """vertices ``[468, 3]`` cm, uv ``[468, 2]``, faces ``[898, 3]`` int64."""

    vertices: np.ndarray
    uv: np.ndarray
    faces: np.ndarray


def default_bundle_path() -> Path:
    from flameqa.models import model_dir

    return model_dir() / "face_landmarker" / "face_landmarker.task"


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        r |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return r, i


def _fields(b: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of one protobuf message; values stay raw."""
    out = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        out.append((num, wt, v))
    return out


def _floats(entries: list[tuple[int, object]]) -> list[float]:
    vals: list[float] = []
    for wt, v in entries:
        assert isinstance(v, bytes)
        if wt == 5:  # one unpacked float
            vals.append(struct.unpack("<f", v)[0])
        else:  # packed
            vals.extend(np.frombuffer(v, "<f4").tolist())
    return vals


def _uints(entries: list[tuple[int, object]]) -> list[int]:
    vals: list[int] = []
    for wt, v in entries:
        if wt == 0:
            vals.append(int(v))  # type: ignore[arg-type]
        else:
            assert isinstance(v, bytes)
            i = 0
            while i < len(v):
                x, i = _varint(v, i)
                vals.append(x)
    return vals


def parse_geometry_metadata(data: bytes) -> CanonicalMesh:
    """Decode a ``GeometryPipelineMetadata`` message to the canonical mesh."""
    meshes = [v for num, wt, v in _fields(data) if num == 1 and wt == 2]
    if not meshes:
        raise ValueError("no canonical_mesh (field 1) in the geometry metadata")
    m = _fields(meshes[0])  # type: ignore[arg-type]
    vb = np.asarray(_floats([(wt, v) for num, wt, v in m if num == 3]), np.float32)
    ib = np.asarray(_uints([(wt, v) for num, wt, v in m if num == 4]), np.int64)
    if vb.size % 5 or ib.size % 3:
        raise ValueError(f"unexpected buffer sizes: {vb.size} vertex floats, {ib.size} indices")
    vb = vb.reshape(-1, 5)
    return CanonicalMesh(vertices=vb[:, :3].copy(), uv=vb[:, 3:].copy(), faces=ib.reshape(-1, 3))


def _find_member(z: zipfile.ZipFile, depth: int = 0) -> bytes | None:
    if _MEMBER in z.namelist():
        return z.read(_MEMBER)
    if depth >= 2:
        return None
    for name in z.namelist():
        data = z.read(name)
        if data[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(data)):
            try:
                found = _find_member(zipfile.ZipFile(io.BytesIO(data)), depth + 1)
            except zipfile.BadZipFile:
                continue
            if found is not None:
                return found
    return None


def read_canonical_mesh(bundle: str | os.PathLike | None = None) -> CanonicalMesh:
    """Read the canonical face mesh from a FaceLandmarker ``.task`` bundle (default: the model cache).

    Raises:
        FileNotFoundError: no bundle (run ``make setup`` to fill the model cache).
        ValueError: the bundle holds no readable geometry metadata.
    """
    path = Path(bundle) if bundle is not None else default_bundle_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"FaceLandmarker bundle not found at {path}: the demo head is built from its canonical face mesh; "
            "run `make setup` to fill the model cache or pass the bundle path"
        )
    with zipfile.ZipFile(path) as z:
        data = _find_member(z)
    if data is None:
        raise ValueError(f"{path}: no member {_MEMBER!r} (searched nested bundles too)")
    mesh = parse_geometry_metadata(data)
    if mesh.vertices.shape != (468, 3) or mesh.faces.shape != (898, 3) or mesh.faces.max() >= 468:
        raise ValueError(f"{path}: canonical mesh has {mesh.vertices.shape} vertices / {mesh.faces.shape} faces, expected (468, 3) / (898, 3)")
    return mesh
