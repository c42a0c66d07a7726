"""Test-time FLAME-format files: a small random model and writers that store it the way the official
files are stored (Python-2-style protocol-2 pickle, chumpy objects, a scipy csc J_regressor)."""

from __future__ import annotations

import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def grid_mesh(nx: int = 7, ny: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A curved grid patch: vertices ``[nx*ny, 3]`` (metres), faces ``[2(nx-1)(ny-1), 3]``."""
    x, y = np.meshgrid(np.linspace(-0.08, 0.08, nx), np.linspace(-0.1, 0.1, ny))
    z = 0.05 - 4.0 * (x**2 + 0.5 * y**2)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    f = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a, b, c, d = j * nx + i, j * nx + i + 1, (j + 1) * nx + i, (j + 1) * nx + i + 1
            f += [[a, b, d], [a, d, c]]
    return v, np.asarray(f, np.int64)


def random_model(seed: int = 0, k: int = 400, nx: int = 7, ny: int = 6) -> dict[str, np.ndarray]:
    """Official FLAME keys with random but well-formed arrays (nonzero pose correctives)."""
    rng = np.random.default_rng(seed)
    v, f = grid_mesh(nx, ny)
    n = v.shape[0]
    w = rng.random((n, 5)) ** 4
    w /= w.sum(1, keepdims=True)
    jreg = np.zeros((5, n))
    for j in range(5):
        ids = rng.choice(n, 6, replace=False)
        jreg[j, ids] = rng.random(6)
        jreg[j] /= jreg[j].sum()
    return {
        "v_template": v,
        "shapedirs": 0.002 * rng.standard_normal((n, 3, k)),
        "posedirs": 0.001 * rng.standard_normal((n, 3, 36)),
        "J_regressor": jreg,
        "weights": w,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
        "f": f.astype(np.uint32),
        "J": jreg @ v,
    }


# --- chumpy look-alikes: pickled under the module name chumpy.ch / chumpy.reordering -------------


def _fake_chumpy_modules() -> dict[str, types.ModuleType]:
    ch = types.ModuleType("chumpy.ch")
    reo = types.ModuleType("chumpy.reordering")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()
            self._itr = None

    class Select(Ch):
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape
            self._dirty_vars = set()

    for cls, mod in ((Ch, ch), (Select, reo)):
        cls.__module__ = mod.__name__
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    return {"chumpy": types.ModuleType("chumpy"), "chumpy.ch": ch, "chumpy.reordering": reo}


class Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes and str as Python 2 ``str`` (BINSTRING) and numpy's module as ``numpy.core``,
    as a Python-2 pickle of the official files does."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj, name=None):
        mod = getattr(obj, "__module__", None)
        if mod and mod.startswith("numpy._core"):
            # write the Python-2-era module path numpy.core.multiarray
            name = name or obj.__qualname__
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + name.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def write_official_style_pickle(arrays: dict[str, np.ndarray], path: Path, monkeypatch) -> Path:
    mods = _fake_chumpy_modules()
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    Ch, Select = mods["chumpy.ch"].Ch, mods["chumpy.reordering"].Select
    n = arrays["v_template"].shape[0]
    obj = {
        "v_template": Ch(arrays["v_template"]),
        "shapedirs": Ch(arrays["shapedirs"]),
        "posedirs": Select(Ch(arrays["posedirs"].ravel()), np.arange(n * 3 * 36), (n, 3, 36)),
        "J_regressor": sp.csc_matrix(arrays["J_regressor"]),
        "weights": Ch(arrays["weights"]),
        "kintree_table": arrays["kintree_table"],
        "f": arrays["f"],
        "J": Ch(arrays["J"]),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    with open(path, "wb") as fh:
        Py2StylePickler(fh, protocol=2).dump(obj)
    return path


class Evil:
    """Unpickling this would run a shell command that creates ``target``."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


class EvilOpen:
    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))
