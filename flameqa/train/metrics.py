"""Motion metrics through the FLAME layer, and the two baselines every model is compared with.

Predicted and ground-truth parameters go through the same FLAME-format layer (the demo head or a
user's FLAME file) with the sample's identity shape; vertex metrics are face-local (global pose and,
unless ``include_neck``, neck set to zero). Units: metres, seconds.

Per sequence, averaged over sequences:

- ``lve``: lip vertex error — per frame the max L2 error over lip vertices, averaged over valid frames.
- ``mve``: mean vertex error over all vertices and valid frames.
- ``fdd``: upper-face dynamics deviation (CodeTalker/SelfTalk definition): per upper-face vertex the
  std over time of its squared displacement from the neutral mesh, averaged over vertices;
  ground truth minus prediction (m²; > 0: the prediction moves the upper face too little).
  ``fdd_abs`` averages the absolute per-sequence value.
- ``lipsync_corr``: Pearson correlation over time of predicted and true jaw opening (jaw x rotation).
- ``jaw_energy_corr``: correlation of the predicted jaw opening with the audio's log energy at the
  best motion lag in 0..``max_lag`` frames; ``jaw_energy_corr_gt`` the same for ground truth and
  ``jaw_energy_gap`` their absolute difference. A prediction that is a (lagged) linear function of
  energy scores near 1 on ``jaw_energy_corr`` by construction, so that number alone cannot rank
  models: the gap to ground truth and ``lipsync_corr`` can.
- ``jitter``: mean vertex acceleration magnitude (m/s², second difference × fps²), with
  ``jitter_gt`` for reference.
- ``neck_mae``: mean absolute neck rotation error (radians).
- ``fd_expression``: Fréchet distance between Gaussians fitted to all predicted and all true
  expression frames (the model's n_expr coefficients), pooled over sequences.

Lip / upper-face vertices: FLAME_masks.pkl (``lips``; ``forehead`` ∪ ``eye_region``) when given;
for the demo head (vertex i = MediaPipe landmark i) MediaPipe's lipsUpper/LowerOuter/Inner sets and
the vertices above the nose tip.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = [
    "FaceRegions",
    "VertexEvaluator",
    "MEDIAPIPE_LIPS",
    "face_regions",
    "vertex_dim_weights",
    "frechet_distance",
    "pearson",
    "sequence_metrics",
    "aggregate",
    "MeanMotionBaseline",
    "EnergyJawBaseline",
    "METRIC_DIRECTIONS",
]

# MediaPipe face mesh lip contours (FACEMESH_LIPS: lipsUpperOuter, lipsLowerOuter, lipsUpperInner, lipsLowerInner)
_LIPS_UPPER_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
_LIPS_LOWER_OUTER = [146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 61]
_LIPS_UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
_LIPS_LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
MEDIAPIPE_LIPS = np.array(sorted(set(_LIPS_UPPER_OUTER + _LIPS_LOWER_OUTER + _LIPS_UPPER_INNER + _LIPS_LOWER_INNER)), np.int64)
MEDIAPIPE_NOSE_TIP = 1

#: +1: higher is better, -1: lower is better, 0: closer to the ground-truth value is better (reported only)
METRIC_DIRECTIONS = {
    "lve": -1, "mve": -1, "fdd_abs": -1, "lipsync_corr": 1, "jaw_energy_gap": -1, "fd_expression": -1,
    "neck_mae": -1, "jitter": 0, "fdd": 0, "jaw_energy_corr": 0,
}  # fmt: skip


@dataclass(frozen=True)
class FaceRegions:
    lips: np.ndarray
    """``[n_lip]`` vertex ids."""
    upper: np.ndarray
    """``[n_upper]`` vertex ids."""
    source: str


def _load_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    from flameqa.flame.io import FlameFileError, safe_pickle_load

    obj = safe_pickle_load(path, what=str(path))
    if not isinstance(obj, dict):
        raise FlameFileError(f"{path}: expected a dict of vertex index arrays (FLAME_masks.pkl), got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        try:
            out[str(k)] = np.asarray(v, np.int64).reshape(-1)
        except (TypeError, ValueError):
            continue
    return out


def face_regions(v_template: np.ndarray, model_id: str, masks: str | os.PathLike | None = None) -> FaceRegions:
    """Lip and upper-face vertex ids for a model (``v_template [V, 3]``)."""
    V = len(v_template)
    if masks is not None:
        from flameqa.flame.io import FlameFileError

        m = _load_masks(masks)
        missing = [k for k in ("lips", "forehead", "eye_region") if k not in m]
        if missing:
            raise FlameFileError(f"{masks}: missing mask(s) {missing}; FLAME_masks.pkl has lips, forehead, eye_region, ... (found {sorted(m)})")
        lips, upper = m["lips"], np.union1d(m["forehead"], m["eye_region"])
        for name, ids in (("lips", lips), ("forehead/eye_region", upper)):
            if ids.size == 0 or ids.max() >= V or ids.min() < 0:
                raise FlameFileError(f"{masks}: {name} indices out of range for a {V}-vertex model")
        return FaceRegions(lips, upper, str(masks))
    if model_id == "flameqa-demo-head" or V in (468, 478):
        upper = np.nonzero(v_template[:, 1] > v_template[MEDIAPIPE_NOSE_TIP, 1])[0].astype(np.int64)
        return FaceRegions(MEDIAPIPE_LIPS, upper, "mediapipe")
    raise ValueError(
        f"model {model_id!r} ({V} vertices) has no built-in lip/upper-face regions: pass eval.masks=FLAME_masks.pkl "
        "(from flame.is.tue.mpg.de, next to the FLAME model)"
    )


class VertexEvaluator:
    """Vertices of motion parameters through a FLAME-format layer (no grad, chunked over frames)."""

    def __init__(self, flame_model: str = "demo", masks: str | None = None, n_shape: int = 100, include_neck: bool = False, chunk: int = 512) -> None:
        from flameqa.flame import FlameLayer, load_model, resolve_model_path

        data = load_model(resolve_model_path(flame_model))
        data.mediapipe = data.lmk68 = None  # vertices only: skip the landmark gathers in every forward
        self.layer = FlameLayer(data, n_shape=min(n_shape, data.n_shape_file), n_expr=min(100, data.n_expr_file))
        self.layer.eval()
        self.model_id = self.layer.model_id
        self.regions = face_regions(self.layer.v_template.numpy(), self.model_id, masks)
        self.include_neck, self.chunk = include_neck, chunk

    def _shape(self, shape: np.ndarray) -> torch.Tensor:
        s = np.zeros(self.layer.n_shape, np.float32)
        n = min(len(shape), self.layer.n_shape)
        s[:n] = shape[:n]
        return torch.from_numpy(s)[None]

    @torch.no_grad()
    def vertices(self, expression: np.ndarray, jaw: np.ndarray, neck: np.ndarray | None, shape: np.ndarray) -> np.ndarray:
        """``expression [T, E]`` (E ≤ 100, zero-padded), ``jaw [T, 3]``, ``neck [T, 3]`` → ``[T, V, 3]``."""
        T = len(jaw)
        E = self.layer.n_expr
        ex = np.zeros((T, E), np.float32)
        n = min(E, expression.shape[1])
        ex[:, :n] = expression[:, :n]
        out = []
        sh = self._shape(shape)
        for a in range(0, T, self.chunk):
            b = min(T, a + self.chunk)
            pose = torch.zeros(b - a, 15)
            if self.include_neck and neck is not None:
                pose[:, 3:6] = torch.from_numpy(np.ascontiguousarray(neck[a:b], np.float32))
            pose[:, 6:9] = torch.from_numpy(np.ascontiguousarray(jaw[a:b], np.float32))
            v = self.layer(shape=sh.expand(b - a, -1), expression=torch.from_numpy(ex[a:b]), pose=pose).vertices
            out.append(v.numpy())
        return np.concatenate(out, 0) if out else np.zeros((0, self.layer.n_vertices, 3), np.float32)

    @torch.no_grad()
    def neutral(self, shape: np.ndarray) -> np.ndarray:
        return self.layer(shape=self._shape(shape)).vertices[0].numpy()


def vertex_dim_weights(ev: VertexEvaluator, scale: np.ndarray, n_expr: int) -> np.ndarray:
    """Per motion dimension, the mean squared vertex displacement (neutral head) caused by moving
    that dimension by ``scale[d]`` (its standard deviation), normalised to mean 1 over the
    expression and jaw dimensions. Neck dimensions get 1 (they are not in face-local metrics).
    ``[D]`` float32: a diagonal approximation of a vertex-space loss on normalised motion."""
    D = n_expr + 6
    base = ev.vertices(np.zeros((1, n_expr), np.float32), np.zeros((1, 3), np.float32), None, np.zeros(0, np.float32))
    m = np.zeros((D, D), np.float32)
    m[np.arange(D), np.arange(D)] = scale[:D]
    v = ev.vertices(m[:, :n_expr], m[:, n_expr : n_expr + 3], None, np.zeros(0, np.float32))
    w = ((v - base) ** 2).sum(-1).mean(-1)  # [D]
    face = w[: n_expr + 3]
    w[: n_expr + 3] = face / max(face.mean(), 1e-20)
    w[n_expr + 3 :] = 1.0
    return w.astype(np.float32)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is (nearly) constant or shorter than 3."""
    if len(a) < 3 or len(a) != len(b):
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def _best_lag_corr(x: np.ndarray, energy: np.ndarray, max_lag: int) -> float:
    best = -1.0
    for lag in range(0, max_lag + 1):
        if len(x) - lag < 3:
            break
        best = max(best, pearson(x[lag:], energy[: len(energy) - lag]))
    return best if best > -1.0 else 0.0


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to ``x [N, E]`` and ``y [M, E]``."""
    from scipy import linalg

    mx, my = x.mean(0), y.mean(0)
    eps = 1e-6 * np.eye(x.shape[1])
    cx = np.cov(x, rowvar=False) + eps if len(x) > 1 else eps
    cy = np.cov(y, rowvar=False) + eps if len(y) > 1 else eps
    covmean = linalg.sqrtm(cx @ cy)
    covmean = np.real(covmean)
    return float(((mx - my) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2 * np.trace(covmean))


def _split(motion: np.ndarray, n_expr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return motion[:, :n_expr], motion[:, n_expr : n_expr + 3], motion[:, n_expr + 3 : n_expr + 6]


def sequence_metrics(ev: VertexEvaluator, pred: np.ndarray, seq, n_expr: int, max_lag: int = 5, gt_cache: dict | None = None) -> dict[str, Any]:
    """Metrics of one predicted sequence ``pred [T, D]`` (raw units) against ``seq`` (a
    :class:`~flameqa.train.data.MotionSequence`). ``gt_cache`` (per sample id) saves recomputing
    the ground-truth vertices for every method."""
    T = seq.n_frames
    if pred.shape[0] != T:
        raise ValueError(f"{seq.sample_id}: prediction has {pred.shape[0]} frames, ground truth {T}")
    p_ex, p_jaw, p_neck = _split(pred, n_expr)
    _, g_jaw, g_neck = _split(seq.motion, n_expr)
    key = seq.sample_id
    if gt_cache is not None and key in gt_cache:
        gv, neutral, gt_stats = gt_cache[key]
    else:
        gv = ev.vertices(seq.expression_full, g_jaw, g_neck, seq.shape)
        neutral = ev.neutral(seq.shape)
        up = ((gv[:, ev.regions.upper] - neutral[ev.regions.upper]) ** 2).sum(-1)  # [T, n_upper] squared displacement
        gt_stats = {
            "dyn_upper": float(up.std(0).mean()),
            "jitter": float(np.linalg.norm(np.diff(gv, 2, axis=0), axis=-1).mean() * seq.fps**2) if T > 2 else 0.0,
            "jaw_energy": _best_lag_corr(g_jaw[:, 0], seq.energy, max_lag),
        }
        if gt_cache is not None:
            gt_cache[key] = (gv, neutral, gt_stats)
    pv = ev.vertices(p_ex, p_jaw, p_neck, seq.shape)
    err = np.linalg.norm(pv - gv, axis=-1)  # [T, V]
    valid = seq.valid if seq.valid.any() else np.ones(T, bool)
    up = ((pv[:, ev.regions.upper] - neutral[ev.regions.upper]) ** 2).sum(-1)
    fdd = gt_stats["dyn_upper"] - float(up.std(0).mean())
    jec = _best_lag_corr(p_jaw[:, 0], seq.energy, max_lag)
    return {
        "sample_id": seq.sample_id,
        "identity": seq.identity,
        "frames": int(valid.sum()),
        "lve": float(err[valid][:, ev.regions.lips].max(1).mean()),
        "mve": float(err[valid].mean()),
        "fdd": fdd,
        "fdd_abs": abs(fdd),
        "lipsync_corr": pearson(p_jaw[:, 0], g_jaw[:, 0]),
        "jaw_energy_corr": jec,
        "jaw_energy_corr_gt": gt_stats["jaw_energy"],
        "jaw_energy_gap": abs(jec - gt_stats["jaw_energy"]),
        "jitter": float(np.linalg.norm(np.diff(pv, 2, axis=0), axis=-1).mean() * seq.fps**2) if T > 2 else 0.0,
        "jitter_gt": gt_stats["jitter"],
        "neck_mae": float(np.abs(p_neck - g_neck)[valid].mean()),
        "_expr_pred": p_ex[valid],
        "_expr_gt": seq.motion[valid, :n_expr],
    }


def aggregate(per_seq: list[dict[str, Any]]) -> dict[str, float]:
    """Average per-sequence metrics (each sequence weighs the same) and add ``fd_expression``."""
    if not per_seq:
        return {}
    keys = [k for k, v in per_seq[0].items() if isinstance(v, float)]
    out = {k: float(np.mean([r[k] for r in per_seq])) for k in keys}
    out["fd_expression"] = frechet_distance(np.concatenate([r["_expr_gt"] for r in per_seq]), np.concatenate([r["_expr_pred"] for r in per_seq]))
    out["sequences"] = len(per_seq)
    out["frames"] = int(sum(r["frames"] for r in per_seq))
    return out


# ---------------------------------------------------------------------------------------------
# baselines (normalised space in, raw units out: the caller's per-identity statistics apply)
# ---------------------------------------------------------------------------------------------

MeanStd = tuple[np.ndarray, np.ndarray]


class MeanMotionBaseline:
    """Every frame is the identity's mean motion (normalised 0)."""

    name = "mean_motion"

    def predict(self, seq, mean_std: MeanStd) -> np.ndarray:
        return np.tile(mean_std[0], (seq.n_frames, 1)).astype(np.float32)


class EnergyJawBaseline:
    """Jaw (3, normalised) = a + Σ_j b_j · e[t - j], j = 0..taps-1: a causal linear filter of the
    per-sequence z-scored log RMS energy (so it can learn the audio → jaw lag and smoothing);
    every other dimension is the identity's mean. Least squares on training frames."""

    name = "energy_jaw"

    def __init__(self, n_expr: int, taps: int = 6, coef: np.ndarray | None = None) -> None:
        self.n_expr, self.taps = n_expr, taps
        self.coef = coef if coef is not None else np.zeros((1 + taps, 3), np.float32)  # [1 + taps, jaw xyz]

    def _design(self, energy: np.ndarray) -> np.ndarray:
        e = (energy - energy.mean()) / (energy.std() + 1e-6)
        cols = [np.ones_like(e)] + [np.concatenate([np.zeros(j, e.dtype), e[: len(e) - j]]) for j in range(self.taps)]
        return np.stack(cols, 1)  # [T, 1 + taps]

    def fit(self, seqs, stats) -> "EnergyJawBaseline":
        j0, j1 = self.n_expr, self.n_expr + 3
        xs, ys = [], []
        for s in seqs:
            m, sd = stats.for_identity(s.identity)
            xs.append(self._design(s.energy)[s.valid])
            ys.append(((s.motion[:, j0:j1] - m[j0:j1]) / sd[j0:j1])[s.valid])
        self.coef = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)[0].astype(np.float32)
        return self

    def predict(self, seq, mean_std: MeanStd) -> np.ndarray:
        m, sd = mean_std
        j0, j1 = self.n_expr, self.n_expr + 3
        out = np.tile(m, (seq.n_frames, 1)).astype(np.float32)
        out[:, j0:j1] = (self._design(seq.energy) @ self.coef) * sd[j0:j1] + m[j0:j1]
        return out

    def to_state(self) -> dict[str, Any]:
        return {"n_expr": self.n_expr, "taps": self.taps, "coef": torch.as_tensor(self.coef)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "EnergyJawBaseline":
        return cls(int(d["n_expr"]), int(d["taps"]), d["coef"].numpy())


Predictor = Callable[[Any, MeanStd], np.ndarray]
