"""Loading FLAME-format model files and landmark embeddings, safely.

The official FLAME files are Python-2 pickles holding chumpy objects and a scipy sparse matrix; the
landmark embeddings come as pickles, ``.npy`` object arrays (pickles again, DECA's with torch tensors
inside) and ``.npz``. A pickle can run arbitrary code, so every pickle here goes through
:class:`RestrictedUnpickler`: it maps the handful of classes those files use to inert placeholders
and refuses everything else before anything is called. ``.npz`` files are read with
``allow_pickle=False``.

Nothing here imports chumpy or runs torch's unpickler. All float arrays come back as float32,
index arrays as int64. Errors are :class:`FlameFileError` and name the file, key, expected and actual
shape.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "FlameFileError",
    "UnsafePickleError",
    "RestrictedUnpickler",
    "safe_pickle_load",
    "safe_npy_load",
    "FlameModelData",
    "MediaPipeEmbedding",
    "Lmk68Embedding",
    "load_model",
    "load_mediapipe_embedding",
    "load_lmk68_embedding",
    "FLAME_IRIS_VERTICES",
    "LICENSE_NOTES",
]

#: FLAME (5023-vertex topology) vertices standing in for MediaPipe's iris points 468–477
#: (468 = right iris centre, 469–472 its ring; 473 = left iris centre, 474–477 its ring).
FLAME_IRIS_VERTICES: dict[int, int] = dict(
    zip(range(468, 478), [4597, 4542, 4510, 4603, 4570, 4051, 3996, 3964, 3932, 4028])
)
FLAME_N_VERTICES = 5023
FLAME_N_SHAPE = 300  # shape components in a FLAME file; the rest of shapedirs are expression

LICENSE_NOTES: dict[str, str] = {
    "flame2020": "FLAME 2020: MPI non-commercial license (flame.is.tue.mpg.de); not for commercial use.",
    "flame2023": "FLAME 2023: MPI non-commercial license (flame.is.tue.mpg.de); not for commercial use.",
    "flame2023_no_jaw": "FLAME 2023 (no jaw): MPI non-commercial license; not for commercial use.",
    "flame2023_open": "FLAME 2023 Open: CC-BY-4.0 (attribution required).",
    "flameqa-demo-head": "flameqa demo head: NOT FLAME. Generated from MediaPipe's canonical face mesh "
    "(Apache-2.0, Google); same array layout as FLAME, for demos and tests only.",
}


class FlameFileError(ValueError):
    """A model or embedding file is missing a key, has a wrong shape, or cannot be parsed."""


class UnsafePickleError(FlameFileError):
    """A pickle referenced a class or function outside the allow-list; nothing was executed."""


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------


class ChumpyPlaceholder:
    """Stand-in for any ``chumpy.*`` object: keeps the pickled state, runs nothing.

    chumpy's leaf ``Ch`` stores its value in ``state["x"]``; a ``Select`` node stores ``a`` (its
    input), ``idxs`` and ``preferred_shape``. Other chumpy nodes are expressions we do not evaluate.
    """

    chumpy_class = "Ch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never called by pickle, kept inert
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"_state": state}

    def value(self) -> np.ndarray:
        s = getattr(self, "state", {})
        if "x" in s:
            return np.asarray(_to_array(s["x"]))
        raise FlameFileError(f"chumpy object of class {self.chumpy_class!r} holds no value 'x' (keys {sorted(s)})")


class ChumpySelectPlaceholder(ChumpyPlaceholder):
    chumpy_class = "Select"

    def value(self) -> np.ndarray:
        s = getattr(self, "state", {})
        if not {"a", "idxs"} <= set(s):
            raise FlameFileError(f"chumpy Select node lacks 'a'/'idxs' (keys {sorted(s)})")
        out = np.asarray(_to_array(s["a"])).ravel()[np.asarray(s["idxs"]).ravel()]
        shape = s.get("preferred_shape")
        return out.reshape(shape) if shape is not None else out


class SparseState:
    """Stand-in for a pickled scipy sparse matrix (module paths differ across scipy versions, and
    old pickles carry the attribute dict of old scipy): keeps the state, rebuilt by :meth:`toarray`."""

    sparse_format = "csc"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"_state": state}

    def toarray(self) -> np.ndarray:
        import scipy.sparse as sp

        s = getattr(self, "state", {})
        try:
            shape = tuple(int(x) for x in s.get("_shape", s.get("shape")))
            data, indices, indptr = (np.asarray(s[k]) for k in ("data", "indices", "indptr"))
        except (KeyError, TypeError) as e:
            raise FlameFileError(f"pickled sparse matrix lacks data/indices/indptr/shape (keys {sorted(s)})") from e
        cls = sp.csr_matrix if self.sparse_format == "csr" else sp.csc_matrix
        return np.asarray(cls((data, indices, indptr), shape=shape).toarray())


class CsrState(SparseState):
    sparse_format = "csr"


@dataclass
class _TorchStorage:
    """A storage read from torch's legacy serialization, as a flat numpy array."""

    array: np.ndarray


_TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_TORCH_STORAGE_DTYPES[name])


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` limited to the placeholder classes and ``object`` as base."""
    if base is not object or not (isinstance(cls, type) and issubclass(cls, (ChumpyPlaceholder, SparseState))):
        raise UnsafePickleError(f"refusing to reconstruct {cls!r} from base {base!r}")
    return object.__new__(cls)


def _safe_ndarray_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to build ndarray subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _safe_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"refusing numpy scalar of dtype {dtype!r}")
    if isinstance(data, str):
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype)[0]


def _safe_codecs_encode(obj: str, encoding: str = "utf-8") -> bytes:
    # Python 3 protocol-2 pickles spell bytes as _codecs.encode(str, "latin1").
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(obj).__name__}, {encoding!r})")
    return obj.encode(encoding)


def _torch_load_from_bytes(data: bytes) -> _TorchStorage:
    """Parse a storage written by torch's legacy (non-zip) serializer — what a pickled tensor holds —
    with the restricted unpickler. Layout: pickled magic, protocol, sys-info, the storage as a
    persistent id ``('storage', type, key, location, numel, view)``, the list of keys, then per key an
    int64 element count and the raw little-endian bytes."""
    f = io.BytesIO(data)
    for _header in ("magic number", "protocol version", "system info"):
        RestrictedUnpickler(f, allow_torch=True).load()
    refs: dict[str, tuple[_StorageType, int]] = {}

    def persistent_load(pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafePickleError(f"unexpected persistent id in a pickled torch storage: {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise FlameFileError("pickled torch storage views (torch < 1.0 files) are not supported")
        refs[str(pid[2])] = (pid[1], int(pid[4]))
        return str(pid[2])

    key = RestrictedUnpickler(f, allow_torch=True, persistent=persistent_load).load()
    keys = RestrictedUnpickler(f, allow_torch=True).load()
    arrays: dict[str, np.ndarray] = {}
    for k in keys:
        stype, numel = refs[str(k)]
        (n,) = struct.unpack("<q", f.read(8))
        raw = f.read(n * stype.dtype.itemsize)
        if n != numel or len(raw) != n * stype.dtype.itemsize:
            raise FlameFileError(f"truncated torch storage: expected {numel} elements, found {len(raw) // stype.dtype.itemsize}")
        arrays[str(k)] = np.frombuffer(raw, dtype=stype.dtype.newbyteorder("<")).copy()
    return _TorchStorage(arrays[key])


def _torch_rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` done in numpy: a strided view copied out."""
    if not isinstance(storage, _TorchStorage):
        raise UnsafePickleError(f"tensor rebuilt from {type(storage).__name__}, expected a storage")
    a = storage.array
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    need = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if need > a.size:
        raise FlameFileError(f"tensor of size {size} needs {need} elements, its storage has {a.size}")
    view = np.lib.stride_tricks.as_strided(a[offset:], shape=size, strides=tuple(s * a.itemsize for s in stride))
    return np.array(view)


def _empty_ordered_dict(*args: Any) -> dict:
    if args:
        raise UnsafePickleError("refusing OrderedDict with arguments")
    return {}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves an allow-list of globals, each to an inert stand-in.

    Allowed: every ``chumpy.*`` class (→ :class:`ChumpyPlaceholder`), scipy's ``csc_matrix`` /
    ``csr_matrix`` under any module path (→ :class:`SparseState`), numpy's array/dtype/scalar
    reconstruction, ``copyreg._reconstructor`` for those classes, ``_codecs.encode``, and with
    ``allow_torch`` the two functions a pickled CPU tensor calls (re-implemented in numpy). Anything
    else raises :class:`UnsafePickleError` at the moment the pickle names it, before any call.
    """

    def __init__(
        self, file: Any, *, allow_torch: bool = False, encoding: str = "latin1", persistent: Callable[[Any], Any] | None = None
    ) -> None:
        super().__init__(file, encoding=encoding)
        self.allow_torch = allow_torch
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpySelectPlaceholder if name == "Select" else ChumpyPlaceholder
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
            return SparseState if name == "csc_matrix" else CsrState
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _safe_reconstructor
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "_reconstruct":
                return _safe_ndarray_reconstruct
            if name == "scalar":
                return _safe_scalar
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module in ("__builtin__", "builtins") and name in ("object", "set", "frozenset", "slice"):
            return {"object": object, "set": set, "frozenset": frozenset, "slice": slice}[name]
        if module == "_codecs" and name == "encode":
            return _safe_codecs_encode
        if self.allow_torch:
            if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                return _torch_rebuild_tensor
            if module == "torch.storage" and name == "_load_from_bytes":
                return _torch_load_from_bytes
            if module == "torch" and name in _TORCH_STORAGE_DTYPES:
                return _StorageType(name)
            if module == "collections" and name == "OrderedDict":
                return _empty_ordered_dict
        raise UnsafePickleError(
            f"refusing to load {module}.{name}: not one of the classes FLAME files use "
            "(chumpy, scipy sparse, numpy arrays); the file may be malicious or not a FLAME file"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is not None:
            return self._persistent(pid)
        raise UnsafePickleError(f"refusing persistent id {pid!r}")


def safe_pickle_load(path_or_bytes: str | os.PathLike | bytes, *, allow_torch: bool = False, what: str = "") -> Any:
    """Unpickle with :class:`RestrictedUnpickler`; every error names the file."""
    name = what or (str(path_or_bytes) if not isinstance(path_or_bytes, bytes) else "<bytes>")
    try:
        if isinstance(path_or_bytes, bytes):
            return RestrictedUnpickler(io.BytesIO(path_or_bytes), allow_torch=allow_torch).load()
        with open(path_or_bytes, "rb") as f:
            return RestrictedUnpickler(f, allow_torch=allow_torch).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{name}: {e}") from None
    except FlameFileError as e:
        raise FlameFileError(f"{name}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error) as e:
        raise FlameFileError(f"{name}: not a readable pickle (truncated or corrupt?): {type(e).__name__}: {e}") from None


def safe_npy_load(path: str | os.PathLike) -> Any:
    """Read a ``.npy``; an object array (a pickled dict, as the embedding files are) goes through the
    restricted unpickler, torch tensors inside included. Returns an ndarray or the unwrapped object."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                _, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as e:
            raise FlameFileError(f"{path}: not a .npy file: {e}") from None
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        obj = safe_pickle_load(f.read(), allow_torch=True, what=str(path))
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        return obj.item()
    return obj


# --------------------------------------------------------------------------------------------
# Model and embedding records
# --------------------------------------------------------------------------------------------


@dataclass
class MediaPipeEmbedding:
    """Landmarks at MediaPipe FaceMesh positions, as barycentric points on the model's faces.

    Attributes:
        face_idx: ``[L]`` int64 face index per landmark.
        bary: ``[L, 3]`` float32 barycentric weights.
        mp_indices: ``[L]`` int64: which of MediaPipe's 478 landmarks each row is.
    """

    face_idx: np.ndarray
    bary: np.ndarray
    mp_indices: np.ndarray
    source: str = ""


@dataclass
class Lmk68Embedding:
    """iBUG 68-point embedding: 51 static points (iBUG 18–68) + a 17-point jaw-line contour chosen per
    head yaw from a ``[79, 17]`` table (rows: see :func:`flameqa.flame.lbs.contour_rows`)."""

    static_face_idx: np.ndarray  # [51] int64
    static_bary: np.ndarray  # [51,3]
    dynamic_face_idx: np.ndarray  # [79,17] int64
    dynamic_bary: np.ndarray  # [79,17,3]
    yaw_sign: float = -1.0
    source: str = ""


@dataclass
class FlameModelData:
    """The arrays of a FLAME-format model (float32 / int64), as loaded from a file.

    Attributes:
        v_template: ``[V, 3]`` metres. shapedirs: ``[V, 3, n_shape_file + n_expr_file]``.
        posedirs: ``[V, 3, 9(J−1)]``. j_regressor: ``[J, V]`` (dense). weights: ``[V, J]``.
        parents: J ints, parents[0] = −1. faces: ``[F, 3]``.
        n_shape_file: how many leading shapedirs columns are identity shape (300 for FLAME).
    """

    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    j_regressor: np.ndarray
    weights: np.ndarray
    parents: tuple[int, ...]
    faces: np.ndarray
    n_shape_file: int
    model_id: str
    note: str = ""
    path: str = ""
    joint_names: tuple[str, ...] = ("global", "neck", "jaw", "eye_left", "eye_right")
    mediapipe: MediaPipeEmbedding | None = None
    lmk68: Lmk68Embedding | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_expr_file(self) -> int:
        return int(self.shapedirs.shape[2] - self.n_shape_file)

    @property
    def license_note(self) -> str:
        return LICENSE_NOTES.get(self.model_id, "Unknown model: check its license before use.")


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _to_array(v: Any) -> np.ndarray:
    if isinstance(v, ChumpyPlaceholder):
        return v.value()
    if isinstance(v, SparseState):
        return v.toarray()
    if isinstance(v, _TorchStorage):
        return v.array
    if hasattr(v, "toarray") and hasattr(v, "tocsc"):  # a real scipy matrix (npz conversions)
        return np.asarray(v.toarray())
    return np.asarray(v)


def _get(d: dict, key: str, path: str, expected: str, alts: tuple[str, ...] = ()) -> np.ndarray:
    for k in (key, *alts):
        if k in d:
            try:
                return _to_array(d[k])
            except FlameFileError as e:
                raise FlameFileError(f"{path}: key {k!r}: {e}") from None
    raise FlameFileError(f"{path}: missing key {key!r} (expected shape {expected}); keys present: {sorted(map(str, d))}")


def _check_shape(a: np.ndarray, expected: tuple[int | None, ...], path: str, key: str) -> np.ndarray:
    ok = a.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, a.shape))
    if not ok:
        exp = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise FlameFileError(f"{path}: key {key!r} has shape {tuple(a.shape)}, expected {exp}")
    return a


def _float(a: np.ndarray, path: str, key: str) -> np.ndarray:
    try:
        out = np.ascontiguousarray(a, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise FlameFileError(f"{path}: key {key!r} is not numeric ({a.dtype}): {e}") from None
    if not np.isfinite(out).all():
        raise FlameFileError(f"{path}: key {key!r} contains NaN or Inf")
    return out


def _index(a: np.ndarray, path: str, key: str, upper: int) -> np.ndarray:
    out = np.ascontiguousarray(a).astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= upper):
        raise FlameFileError(f"{path}: key {key!r} has indices in [{out.min()}, {out.max()}], expected [0, {upper})")
    return out


def _model_id_from_name(path: Path) -> str:
    n = path.stem.lower()
    if "demo" in n and "head" in n:
        return "flameqa-demo-head"
    if "2023" in n and "open" in n:
        return "flame2023_open"
    if "2023" in n and "no_jaw" in n:
        return "flame2023_no_jaw"
    if "2023" in n:
        return "flame2023"
    if n in ("generic_model", "male_model", "female_model") or "2020" in n:
        return "flame2020"
    return "flame-unknown"


def _read_mapping(path: Path, *, allow_torch: bool = False) -> dict:
    """A dict of arrays from ``.npz`` (no pickle), ``.npy`` (restricted) or a pickle (restricted)."""
    if not path.is_file():
        raise FlameFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise FlameFileError(f"{path}: not a readable .npz without pickles: {type(e).__name__}: {e}") from None
    if suffix == ".npy":
        obj = safe_npy_load(path)
    else:
        obj = safe_pickle_load(path, allow_torch=allow_torch)
    if not isinstance(obj, dict):
        raise FlameFileError(f"{path}: expected a dict of arrays, found {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def load_model(path: str | os.PathLike) -> FlameModelData:
    """Load a FLAME-format model: an official pickle (``generic_model.pkl``, ``flame2023.pkl``, ...)
    through the restricted unpickler, or an ``.npz`` with the same keys (``allow_pickle=False``).

    If the file itself carries a MediaPipe embedding (keys ``lmk_face_idx``, ``lmk_b_coords``,
    ``landmark_indices``, as the demo head does) or a 68-point embedding (``static_lmk_faces_idx`` ...),
    they are attached. For FLAME topology (5023 vertices) without one, the caller adds embeddings
    with :func:`load_mediapipe_embedding` / :func:`load_lmk68_embedding`.
    """
    path = Path(path)
    d = _read_mapping(path)
    p = str(path)
    v_template = _float(_get(d, "v_template", p, "(V, 3)"), p, "v_template")
    _check_shape(v_template, (None, 3), p, "v_template")
    nv = v_template.shape[0]
    shapedirs = _float(_get(d, "shapedirs", p, f"({nv}, 3, K)"), p, "shapedirs")
    _check_shape(shapedirs, (nv, 3, None), p, "shapedirs")
    kt = _get(d, "kintree_table", p, "(2, J)")
    _check_shape(kt, (2, None), p, "kintree_table")
    nj = kt.shape[1]
    posedirs = _float(_get(d, "posedirs", p, f"({nv}, 3, {9 * (nj - 1)})"), p, "posedirs")
    _check_shape(posedirs, (nv, 3, 9 * (nj - 1)), p, "posedirs")
    jreg = _float(_get(d, "J_regressor", p, f"({nj}, {nv})"), p, "J_regressor")
    _check_shape(jreg, (nj, nv), p, "J_regressor")
    weights = _float(_get(d, "weights", p, f"({nv}, {nj})"), p, "weights")
    _check_shape(weights, (nv, nj), p, "weights")
    faces = _get(d, "f", p, "(F, 3)")
    _check_shape(faces, (None, 3), p, "f")
    faces = _index(faces, p, "f", nv)

    # kintree_table[0] are parents; its first entry is garbage (a uint32 max) in the official files.
    parents = [int(x) for x in np.asarray(kt[0]).astype(np.int64)]
    parents[0] = -1
    for j in range(1, nj):
        if not 0 <= parents[j] < j:
            raise FlameFileError(f"{p}: key 'kintree_table' parent of joint {j} is {parents[j]}, expected in [0, {j})")

    model_id = str(np.asarray(d["model_id"]).item()) if "model_id" in d else _model_id_from_name(path)
    note = str(np.asarray(d["note"]).item()) if "note" in d else ""
    n_shape_file = int(np.asarray(d["n_shape_file"]).item()) if "n_shape_file" in d else min(FLAME_N_SHAPE, shapedirs.shape[2])
    if not 0 <= n_shape_file <= shapedirs.shape[2]:
        raise FlameFileError(f"{p}: key 'n_shape_file' is {n_shape_file}, expected in [0, {shapedirs.shape[2]}]")
    wsum = weights.sum(1)
    if np.abs(wsum - 1).max() > 1e-3:
        log.warning("%s: skinning weights do not sum to 1 (range %.4f..%.4f): posing will scale vertices", p, wsum.min(), wsum.max())

    names = ("global", "neck", "jaw", "eye_left", "eye_right")
    if nj == 5:
        # Which of joints 3/4 is the subject's left eye is undocumented for FLAME: name them by their
        # rest position (+x = the subject's left) rather than trusting an order.
        x3, x4 = (jreg[3] @ v_template)[0], (jreg[4] @ v_template)[0]
        if x3 < 0 < x4:
            names = ("global", "neck", "jaw", "eye_right", "eye_left")
    else:
        names = tuple(f"joint{j}" for j in range(nj))
    data = FlameModelData(
        joint_names=names,
        v_template=v_template,
        shapedirs=shapedirs,
        posedirs=posedirs,
        j_regressor=jreg,
        weights=weights,
        parents=tuple(parents),
        faces=faces,
        n_shape_file=n_shape_file,
        model_id=model_id,
        note=note,
        path=p,
    )
    if "lmk_face_idx" in d:
        data.mediapipe = _mediapipe_from_mapping(d, p, faces)
    if "static_lmk_faces_idx" in d:
        data.lmk68 = _lmk68_from_mapping(d, p, faces)
    return data


def _mediapipe_from_mapping(d: dict, p: str, faces: np.ndarray) -> MediaPipeEmbedding:
    fi = _get(d, "lmk_face_idx", p, "(L,)")
    _check_shape(fi, (None,), p, "lmk_face_idx")
    n = fi.shape[0]
    bc = _float(_get(d, "lmk_b_coords", p, f"({n}, 3)"), p, "lmk_b_coords")
    _check_shape(bc, (n, 3), p, "lmk_b_coords")
    mp = _get(d, "landmark_indices", p, f"({n},)")
    _check_shape(mp, (n,), p, "landmark_indices")
    return MediaPipeEmbedding(
        face_idx=_index(fi, p, "lmk_face_idx", faces.shape[0]), bary=bc, mp_indices=_index(mp, p, "landmark_indices", 478), source=p
    )


def _face_with_vertex(faces: np.ndarray, v: int) -> tuple[int, int]:
    rows, cols = np.nonzero(faces == v)
    if rows.size == 0:
        raise FlameFileError(f"vertex {v} is in no face")
    return int(rows[0]), int(cols[0])


def load_mediapipe_embedding(
    path: str | os.PathLike, faces: np.ndarray, *, add_iris: bool = True, n_vertices: int = FLAME_N_VERTICES
) -> MediaPipeEmbedding:
    """Load ``mediapipe_landmark_embedding.npz`` (``lmk_face_idx (105,)``, ``lmk_b_coords (105, 3)``,
    ``landmark_indices (105,)``) and, for FLAME topology, append the 10 iris points 468–477 as
    one-hot barycentric points on a face holding the mapped vertex (so one gather serves all)."""
    path = Path(path)
    d = _read_mapping(path)
    emb = _mediapipe_from_mapping(d, str(path), faces)
    if add_iris and n_vertices == FLAME_N_VERTICES and not np.isin(np.arange(468, 478), emb.mp_indices).any():
        fidx, bary = [], []
        for mp_i, v in FLAME_IRIS_VERTICES.items():
            f, c = _face_with_vertex(faces, v)
            fidx.append(f)
            b = np.zeros(3, np.float32)
            b[c] = 1.0
            bary.append(b)
        emb = MediaPipeEmbedding(
            face_idx=np.concatenate([emb.face_idx, np.array(fidx, np.int64)]),
            bary=np.concatenate([emb.bary, np.stack(bary)]).astype(np.float32),
            mp_indices=np.concatenate([emb.mp_indices, np.arange(468, 478)]),
            source=emb.source,
        )
    return emb


def _lmk68_from_mapping(d: dict, p: str, faces: np.ndarray, yaw_sign: float = -1.0) -> Lmk68Embedding:
    nf = faces.shape[0]
    sf = _index(_check_shape(_get(d, "static_lmk_faces_idx", p, "(51,)").reshape(-1), (51,), p, "static_lmk_faces_idx"), p, "static_lmk_faces_idx", nf)
    sb = _float(_check_shape(_get(d, "static_lmk_bary_coords", p, "(51, 3)").reshape(-1, 3), (51, 3), p, "static_lmk_bary_coords"), p, "static_lmk_bary_coords")
    df = _get(d, "dynamic_lmk_faces_idx", p, "(79, 17)")
    df = _index(_check_shape(df.reshape(df.shape[-2:]) if df.ndim == 3 else df, (79, 17), p, "dynamic_lmk_faces_idx"), p, "dynamic_lmk_faces_idx", nf)
    db = _get(d, "dynamic_lmk_bary_coords", p, "(79, 17, 3)")
    db = _float(_check_shape(db.reshape(db.shape[-3:]) if db.ndim == 4 else db, (79, 17, 3), p, "dynamic_lmk_bary_coords"), p, "dynamic_lmk_bary_coords")
    if "lmk68_yaw_sign" in d:
        yaw_sign = float(np.asarray(d["lmk68_yaw_sign"]).item())
    return Lmk68Embedding(sf, sb, df, db, yaw_sign=yaw_sign, source=p)


def load_lmk68_embedding(
    path: str | os.PathLike, faces: np.ndarray, dynamic_path: str | os.PathLike | None = None, *, yaw_sign: float | None = None
) -> Lmk68Embedding:
    """Load a 68-point embedding in any of its published layouts.

    - DECA's ``landmark_embedding.npy``: a pickled dict (torch tensors inside, parsed without torch's
      unpickler) with ``static_lmk_faces_idx``, ``static_lmk_bary_coords``, ``dynamic_lmk_faces_idx``,
      ``dynamic_lmk_bary_coords``; its contour table uses yaw sign +1.
    - RingNet's ``flame_static_embedding.pkl`` (``lmk_face_idx (51,)``, ``lmk_b_coords (51, 3)``) with
      ``dynamic_path`` = ``flame_dynamic_embedding.npy`` (``lmk_face_idx (79, 17)``,
      ``lmk_b_coords (79, 17, 3)``); yaw sign −1. Given the static file alone, the dynamic file is
      looked up next to it.
    - An ``.npz`` with DECA's key names.

    ``yaw_sign`` overrides the layout's default sign convention of the contour table.
    """
    path = Path(path)
    d = _read_mapping(path, allow_torch=True)
    p = str(path)
    if "static_lmk_faces_idx" in d:
        default_sign = -1.0 if path.suffix == ".npz" else 1.0
        emb = _lmk68_from_mapping(d, p, faces, default_sign)
    elif "lmk_face_idx" in d:
        dyn = Path(dynamic_path) if dynamic_path is not None else path.with_name("flame_dynamic_embedding.npy")
        dd = _read_mapping(dyn, allow_torch=True)
        merged = {
            "static_lmk_faces_idx": _get(d, "lmk_face_idx", p, "(51,)"),
            "static_lmk_bary_coords": _get(d, "lmk_b_coords", p, "(51, 3)"),
            "dynamic_lmk_faces_idx": _get(dd, "lmk_face_idx", str(dyn), "(79, 17)"),
            "dynamic_lmk_bary_coords": _get(dd, "lmk_b_coords", str(dyn), "(79, 17, 3)"),
        }
        emb = _lmk68_from_mapping(merged, f"{p} + {dyn}", faces, -1.0)
    else:
        raise FlameFileError(
            f"{p}: not a 68-point landmark embedding: expected keys 'static_lmk_faces_idx' (DECA) or "
            f"'lmk_face_idx' (RingNet static); keys present: {sorted(map(str, d))}"
        )
    if yaw_sign is not None:
        emb.yaw_sign = float(yaw_sign)
    return emb


#: File names looked for next to a FLAME model when no embedding is given explicitly.
MEDIAPIPE_EMBEDDING_NAMES = ("mediapipe_landmark_embedding.npz",)
LMK68_EMBEDDING_NAMES = ("landmark_embedding.npy", "flame_static_embedding.pkl", "landmark_embedding.npz")


def find_next_to(model_path: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        for cand in (model_path.parent / n, model_path.parent.parent / "landmark_embedding" / n):
            if cand.is_file():
                return cand
    return None


def describe_model(path: str | os.PathLike) -> dict[str, Any]:
    """What a model file holds (dims, joints, embeddings, license), as a JSON-ready dict.

    Embeddings are reported from the file itself or, for FLAME files, from the standard file names
    next to it (what :meth:`flameqa.flame.FlameLayer.from_file` would load).
    """
    path = Path(path)
    d = load_model(path)
    jt = d.j_regressor.astype(np.float64) @ d.v_template.astype(np.float64)
    mp_src = d.mediapipe.source if d.mediapipe is not None else None
    n_mp = int(d.mediapipe.face_idx.shape[0]) if d.mediapipe is not None else 0
    if d.mediapipe is None:
        p = find_next_to(path, MEDIAPIPE_EMBEDDING_NAMES)
        if p is not None:
            emb = load_mediapipe_embedding(p, d.faces, n_vertices=d.n_vertices)
            mp_src, n_mp = str(p), int(emb.face_idx.shape[0])
    l68_src = d.lmk68.source if d.lmk68 is not None else None
    if d.lmk68 is None:
        p = find_next_to(path, LMK68_EMBEDDING_NAMES)
        l68_src = str(p) if p is not None else None
    return {
        "path": str(path),
        "model_id": d.model_id,
        "n_vertices": d.n_vertices,
        "n_faces": int(d.faces.shape[0]),
        "n_shape": d.n_shape_file,
        "n_expr": d.n_expr_file,
        "n_pose_correctives": int(d.posedirs.shape[2]),
        "pose_correctives_nonzero": bool(np.any(d.posedirs)),
        "joints": [
            {"index": j, "name": d.joint_names[j] if j < len(d.joint_names) else f"joint{j}", "parent": d.parents[j], "rest_m": [round(float(x), 5) for x in jt[j]]}
            for j in range(len(d.parents))
        ],
        "extent_m": [round(float(x), 4) for x in (d.v_template.max(0) - d.v_template.min(0))],
        "mediapipe_embedding": {"landmarks": n_mp, "source": mp_src} if mp_src else None,
        "lmk68_embedding": {"source": l68_src} if l68_src else None,
        "license": d.license_note,
        "note": d.note,
    }
