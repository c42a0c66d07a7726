"""The restricted loader: official-style pickles, npz twins, embeddings, refusal of malicious files."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from flameqa.flame import FlameLayer
from flameqa.flame.io import (
    FLAME_IRIS_VERTICES,
    FlameFileError,
    UnsafePickleError,
    load_lmk68_embedding,
    load_mediapipe_embedding,
    load_model,
    safe_npy_load,
    safe_pickle_load,
)

from ._fixtures import Evil, EvilOpen, grid_mesh, random_model, write_official_style_pickle

KEYS = ("v_template", "shapedirs", "posedirs", "j_regressor", "weights", "faces")


def test_official_style_pickle_equals_npz_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    arrays = random_model(seed=3)
    pkl = write_official_style_pickle(arrays, tmp_path / "generic_model.pkl", monkeypatch)
    raw = pkl.read_bytes()
    assert b"chumpy.ch\nCh" in raw and b"csc_matrix" in raw and b"numpy.core.multiarray" in raw
    monkeypatch.delitem(__import__("sys").modules, "chumpy.ch")  # the loader must not need it
    npz = tmp_path / "twin.npz"
    np.savez(npz, **arrays)
    a, b = load_model(pkl), load_model(npz)
    for k in KEYS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and np.array_equal(x, y), k
    assert a.v_template.dtype == np.float32 and a.faces.dtype == np.int64
    assert a.parents == b.parents == (-1, 0, 1, 1, 1)  # garbage first entry replaced
    assert a.model_id == "flame2020" and a.n_shape_file == 300 and a.n_expr_file == 100
    # and the layer built from either is the same
    la, lb = FlameLayer.from_file(pkl), FlameLayer.from_file(npz)
    p = torch.full((1, 15), 0.1)
    assert torch.equal(la(pose=p).vertices, lb(pose=p).vertices)


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path):
    for i, payload in enumerate([Evil(tmp_path / "pwned0"), EvilOpen(tmp_path / "pwned1")]):
        target = Path(payload.target)
        bad = tmp_path / f"evil{i}.pkl"
        bad.write_bytes(pickle.dumps({"v_template": payload}, protocol=2))
        with pytest.raises(UnsafePickleError, match=r"refusing to load .*(system|open)") as e:
            load_model(bad)
        assert str(bad) in str(e.value)
        assert not target.exists()


def test_malicious_embedding_files_are_refused(tmp_path: Path):
    target = tmp_path / "pwned"
    npy = tmp_path / "landmark_embedding.npy"
    np.save(npy, np.array({"static_lmk_faces_idx": Evil(target)}, dtype=object), allow_pickle=True)
    with pytest.raises(UnsafePickleError):
        safe_npy_load(npy)
    npz = tmp_path / "emb.npz"
    np.savez(npz, lmk_face_idx=np.array([Evil(target)], dtype=object))
    with pytest.raises(FlameFileError, match="without pickles"):
        load_mediapipe_embedding(npz, np.zeros((4, 3), np.int64))
    assert not target.exists()


def test_truncated_pickle_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pkl = write_official_style_pickle(random_model(), tmp_path / "generic_model.pkl", monkeypatch)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(pkl.read_bytes()[: pkl.stat().st_size // 2])
    with pytest.raises(FlameFileError, match=r"cut\.pkl: not a readable pickle \(truncated or corrupt\?\)"):
        load_model(cut)


def test_wrong_shapes_and_missing_keys_name_file_key_expected_actual(tmp_path: Path):
    arrays = random_model()
    n = arrays["v_template"].shape[0]
    bad = dict(arrays, posedirs=np.zeros((n, 3, 30)))
    p = tmp_path / "bad.npz"
    np.savez(p, **bad)
    with pytest.raises(FlameFileError, match=rf"bad\.npz: key 'posedirs' has shape \({n}, 3, 30\), expected \({n}, 3, 36\)"):
        load_model(p)
    bad = {k: v for k, v in arrays.items() if k != "weights"}
    np.savez(p, **bad)
    with pytest.raises(FlameFileError, match=rf"missing key 'weights' \(expected shape \({n}, 5\)\)"):
        load_model(p)
    np.savez(p, **dict(arrays, f=arrays["f"].astype(np.int64) + n))
    with pytest.raises(FlameFileError, match="key 'f' has indices"):
        load_model(p)


def test_deca_embedding_with_torch_tensors_is_parsed_without_torch_unpickler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(0)
    ref = {
        "static_lmk_faces_idx": rng.integers(0, 50, 51),
        "static_lmk_bary_coords": rng.random((51, 3)),
        "dynamic_lmk_faces_idx": rng.integers(0, 50, (79, 17)),
        "dynamic_lmk_bary_coords": rng.random((79, 17, 3)),
        "full_lmk_faces_idx": rng.integers(0, 50, (1, 68)),
    }
    d = {
        "static_lmk_faces_idx": ref["static_lmk_faces_idx"],  # numpy, as in DECA's file
        "static_lmk_bary_coords": ref["static_lmk_bary_coords"],
        "dynamic_lmk_faces_idx": torch.from_numpy(ref["dynamic_lmk_faces_idx"]),  # torch tensors inside
        "dynamic_lmk_bary_coords": torch.from_numpy(ref["dynamic_lmk_bary_coords"]).float().transpose(0, 2).contiguous().transpose(0, 2),  # strided
        "full_lmk_faces_idx": torch.from_numpy(ref["full_lmk_faces_idx"]),
    }
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, d, allow_pickle=True)

    def boom(*a, **k):
        raise AssertionError("torch's unpickler must not run on untrusted files")

    monkeypatch.setattr(torch.storage, "_load_from_bytes", boom)
    monkeypatch.setattr(torch._utils, "_rebuild_tensor_v2", boom)
    monkeypatch.setattr(torch, "load", boom)
    faces = np.zeros((50, 3), np.int64)
    emb = load_lmk68_embedding(path, faces)
    assert np.array_equal(emb.static_face_idx, ref["static_lmk_faces_idx"])
    assert np.array_equal(emb.dynamic_face_idx, ref["dynamic_lmk_faces_idx"])
    assert np.allclose(emb.dynamic_bary, ref["dynamic_lmk_bary_coords"], atol=1e-7)
    assert emb.yaw_sign == 1.0  # DECA's table convention
    raw = safe_npy_load(path)
    assert np.array_equal(raw["full_lmk_faces_idx"], ref["full_lmk_faces_idx"])


def test_ringnet_embedding_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(1)
    static = {"lmk_face_idx": rng.integers(0, 50, 51).astype(np.uint32), "lmk_b_coords": rng.random((51, 3))}
    dyn = {"lmk_face_idx": rng.integers(0, 50, (79, 17)), "lmk_b_coords": rng.random((79, 17, 3))}
    (tmp_path / "flame_static_embedding.pkl").write_bytes(pickle.dumps(static, protocol=2))
    np.save(tmp_path / "flame_dynamic_embedding.npy", np.array(dyn, dtype=object), allow_pickle=True)
    emb = load_lmk68_embedding(tmp_path / "flame_static_embedding.pkl", np.zeros((50, 3), np.int64))
    assert np.array_equal(emb.static_face_idx, static["lmk_face_idx"]) and emb.dynamic_bary.shape == (79, 17, 3)
    assert emb.yaw_sign == -1.0
    bad = dict(dyn, lmk_b_coords=np.zeros((79, 16, 3)))
    np.save(tmp_path / "flame_dynamic_embedding.npy", np.array(bad, dtype=object), allow_pickle=True)
    with pytest.raises(FlameFileError, match=r"'dynamic_lmk_bary_coords' has shape \(79, 16, 3\), expected \(79, 17, 3\)"):
        load_lmk68_embedding(tmp_path / "flame_static_embedding.pkl", np.zeros((50, 3), np.int64))


def test_mediapipe_embedding_adds_iris_for_flame_topology(tmp_path: Path):
    # FLAME topology = 5023 vertices: a strip of triangles covering every vertex
    n = 5023
    faces = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], 1)
    rng = np.random.default_rng(0)
    p = tmp_path / "mediapipe_landmark_embedding.npz"
    np.savez(p, lmk_face_idx=rng.integers(0, n - 2, 105).astype(np.uint32), lmk_b_coords=rng.random((105, 3)), landmark_indices=rng.choice(468, 105, replace=False))
    emb = load_mediapipe_embedding(p, faces, n_vertices=n)
    assert emb.face_idx.shape == (115,) and list(emb.mp_indices[-10:]) == list(range(468, 478))
    # the iris rows are one-hot on the mapped FLAME vertices
    tri = faces[emb.face_idx[-10:]]
    assert [int((t * b).sum()) for t, b in zip(tri, emb.bary[-10:])] == list(FLAME_IRIS_VERTICES.values())
    with pytest.raises(FlameFileError, match=r"'lmk_b_coords' has shape \(105, 2\), expected \(105, 3\)"):
        np.savez(p, lmk_face_idx=np.zeros(105, np.uint32), lmk_b_coords=np.zeros((105, 2)), landmark_indices=np.arange(105))
        load_mediapipe_embedding(p, faces, n_vertices=n)


def test_embeddings_found_next_to_the_model(tmp_path: Path):
    arrays = random_model()
    np.savez(tmp_path / "flame2023.npz", **arrays)
    nf = arrays["f"].shape[0]
    np.savez(tmp_path / "mediapipe_landmark_embedding.npz", lmk_face_idx=np.arange(10) % nf, lmk_b_coords=np.full((10, 3), 1 / 3), landmark_indices=np.arange(10))
    layer = FlameLayer.from_file(tmp_path / "flame2023.npz", n_shape=20, n_expr=10)
    assert layer.model_id == "flame2023" and layer.n_landmarks == 10 and layer.mp_indices.tolist() == list(range(10))
    assert layer.landmarks_only().shape == (1, 10, 3) and layer().landmarks68 is None


def test_restricted_unpickler_allows_plain_data():
    data = {"a": np.arange(5, dtype=np.float32), "b": [1, 2.5, "x"], "c": (np.float64(2.0),)}
    out = safe_pickle_load(pickle.dumps(data, protocol=2))
    assert np.array_equal(out["a"], data["a"]) and out["b"] == data["b"] and out["c"][0] == 2.0
    with pytest.raises(UnsafePickleError):
        safe_pickle_load(pickle.dumps(io.BytesIO(b"x")))
