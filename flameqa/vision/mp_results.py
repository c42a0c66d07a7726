"""FaceLandmarker results read straight from MediaPipe's C structs, one numpy copy per array.

mediapipe 1.2's Python Tasks API wraps a C library with ctypes. Its ``detect_for_video`` makes the
C call, then ``FaceLandmarkerResult.from_ctypes`` builds one Python object per landmark (478 per
face) and per blendshape category (52), each through ctypes attribute reads. That conversion costs
~1 ms of the calling thread per frame (1.24 → 0.28 ms measured on 720p frames, `bench faces`' video),
about 9 % of a frame's landmarking, and it runs while the graph's threads are idle.

:class:`VideoCall` makes the same C call on the same graph and views the result arrays with
numpy through the struct layouts mediapipe itself declares (``ctypes`` field offsets, not numbers
written here), copies them, and releases the result as the public method does. The arrays are
bit-identical to the public path (tested). It depends on private names of mediapipe (the graph's
``_lib``/``_handle``, ``Image._image_ptr``, the ``*_c`` struct modules): :meth:`VideoCall.of`
returns None when any of them is missing or has another shape, and callers use the public API.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _struct_dtype(struct: Any, fields: tuple[str, ...]) -> np.dtype:
    """numpy dtype reading ``fields`` (all C floats) of a ctypes ``struct`` array, at its offsets."""
    for f in fields:
        if getattr(struct, f).size != 4 or dict(struct._fields_)[f] is not ctypes.c_float:
            raise TypeError(f"{struct.__name__}.{f} is not a C float")
    return np.dtype(
        {"names": list(fields), "formats": ["<f4"] * len(fields), "offsets": [getattr(struct, f).offset for f in fields], "itemsize": ctypes.sizeof(struct)}
    )


def _view(ptr: Any, count: int, dtype: np.dtype) -> np.ndarray:
    """``count`` structs at the C pointer ``ptr`` as a (borrowed, not copied) numpy array."""
    addr = ctypes.cast(ptr, ctypes.c_void_p).value
    if not count or not addr:
        return np.zeros(0, dtype)
    return np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(addr), dtype)


class VideoCall:
    """``detect_for_video`` of one FaceLandmarker graph, returning arrays instead of objects."""

    def __init__(self, graph: Any) -> None:
        from mediapipe.tasks.python.components.containers import category_c, landmark_c
        from mediapipe.tasks.python.vision import face_landmarker as fl

        self._graph = graph
        self._detect = graph._lib.MpFaceLandmarkerDetectForVideo
        self._close = graph._lib.MpFaceLandmarkerCloseResult
        self._result_type = fl.MpFaceLandmarkerResultC
        self._landmark = _struct_dtype(landmark_c.MpNormalizedLandmarkC, ("x", "y", "z"))
        self._category = _struct_dtype(category_c.MpCategoryC, ("score",))

    @classmethod
    def of(cls, graph: Any) -> "VideoCall | None":
        """The fast call for ``graph``, or None (with a log line) when this mediapipe lacks the internals."""
        try:
            call = cls(graph)
            graph._handle  # noqa: B018 - checked now rather than on the first frame
            return call
        except (AttributeError, ImportError, TypeError, KeyError) as e:
            log.info("mediapipe internals differ (%s): landmarks go through the public result objects", e)
            return None

    def __call__(self, image: Any, timestamp_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces of one frame: ``(landmarks [F, L, 3] normalised x, y, z; blendshapes [F, C]; transforms [F, 4, 4])``, float32.

        ``image`` is an ``mp.Image``; F faces, L = 478 landmarks, C = 52 categories (as the model
        returns them); a face without blendshapes or transform gets zeros / NaN there.
        """
        res = self._result_type()
        self._detect(self._graph._handle, image._image_ptr, None, int(timestamp_ms), ctypes.byref(res))
        try:
            n = int(res.face_landmarks_count)
            if n == 0:
                return np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32), np.zeros((0, 4, 4), np.float32)
            faces = [_view(res.face_landmarks[i].landmarks, res.face_landmarks[i].landmarks_count, self._landmark) for i in range(n)]
            lm = np.empty((n, max(len(f) for f in faces), 3), np.float32)
            for i, f in enumerate(faces):
                lm[i, : len(f), 0], lm[i, : len(f), 1], lm[i, : len(f), 2] = f["x"], f["y"], f["z"]
            cats = [_view(res.face_blendshapes[i].categories, res.face_blendshapes[i].categories_count, self._category) for i in range(res.face_blendshapes_count)]
            bs = np.zeros((n, max((len(c) for c in cats), default=0)), np.float32)
            for i, c in enumerate(cats):
                bs[i, : len(c)] = c["score"]
            tf = np.full((n, 4, 4), np.nan, np.float32)
            for i in range(min(n, res.facial_transformation_matrixes_count)):
                tf[i] = np.asarray(res.facial_transformation_matrixes[i].to_numpy(), np.float32).reshape(4, 4)
            return lm, bs, tf
        finally:
            self._close(ctypes.byref(res))
