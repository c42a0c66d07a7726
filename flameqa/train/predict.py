"""Audio → FLAME motion with a trained checkpoint, written as a one-row ``flame`` table parquet.

Frame f of the output is at ``f / fps`` seconds into the audio (T = ceil(duration · fps)) and
depends only on audio up to ``(f + 1) / fps``. The parquet has the ``flame`` table's columns and
types (``expression`` ``list<fixed_size_list<float32,100>>`` zero-padded past the model's n_expr,
``jaw``/``neck`` ``[T, 3]``, zero global pose/eyes, a fixed frontal camera), so ``flameqa render``
and anything that reads fitted motion reads predictions too (``status = "predicted"``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flameqa.train.checkpoint import Checkpoint, load_checkpoint
from flameqa.train.data import decode_audio, hash_text, make_featurizer

log = logging.getLogger(__name__)

__all__ = ["PredictedMotion", "predict_motion", "motion_table", "predict_file"]

#: head placement for the camera JSON: 0.5 m in front of an OpenGL camera (looking down −z)
_TRANSL = (0.0, 0.0, -0.5)


@dataclass
class PredictedMotion:
    expression: np.ndarray
    """``[T, 100]`` (zeros past the model's n_expr)."""
    jaw: np.ndarray
    """``[T, 3]`` axis-angle, radians."""
    neck: np.ndarray
    """``[T, 3]``"""
    fps: float
    model_id: str
    identity: str | None

    @property
    def n_frames(self) -> int:
        return len(self.jaw)


@torch.no_grad()
def predict_motion(
    ckpt: Checkpoint | str | os.PathLike,
    audio: np.ndarray | str | os.PathLike,
    sample_rate: int | None = None,
    identity: str | None = None,
    question: str | None = None,
    device: str = "cpu",
) -> PredictedMotion:
    """Predict motion for ``audio`` (a wav path or a mono float array at ``sample_rate``).

    ``identity``: a training identity whose statistics de-normalise the output (its resting face and
    motion range); None uses the pooled training statistics. ``question`` conditions the model when
    it was trained with text.
    """
    ck = ckpt if isinstance(ckpt, Checkpoint) else load_checkpoint(ckpt, device)
    d = ck.config.data
    if isinstance(audio, (str, os.PathLike)):
        wav = decode_audio({"path": str(audio)}, d.sample_rate)
    else:
        if sample_rate is None:
            raise ValueError("sample_rate is required when audio is an array")
        wav = decode_audio({"array": np.asarray(audio, np.float32), "sampling_rate": sample_rate}, d.sample_rate)
    T = max(1, math.ceil(len(wav) / d.sample_rate * d.fps - 1e-9))
    if identity is not None and identity not in ck.stats.identities:
        raise ValueError(f"identity {identity!r} is not one the checkpoint was trained on ({ck.stats.identities[:10]}...); omit it to use pooled statistics")
    m, s = ck.stats.for_identity(identity)
    feats = (make_featurizer(d)(wav, T) - ck.stats.feat_mean) / ck.stats.feat_std
    text = hash_text(question, d.text_buckets)
    text_t = torch.from_numpy(text if len(text) else np.zeros(1, np.int64))[None].to(device)
    y = ck.model(torch.from_numpy(feats)[None].to(device), text_t)[0].float().cpu().numpy()
    motion = y * s + m
    n = d.n_expr
    expr = np.zeros((T, 100), np.float32)
    expr[:, :n] = motion[:, :n]
    model_id = str(ck.raw.get("data", {}).get("model_id") or ("flameqa-demo-head" if ck.config.eval.flame_model == "demo" else "unknown"))
    return PredictedMotion(expr, motion[:, n : n + 3].astype(np.float32), motion[:, n + 3 : n + 6].astype(np.float32), d.fps, model_id, identity)


def motion_table(pm: PredictedMotion, clip_id: str, shape: np.ndarray | None = None):
    """One ``flame``-table row (pyarrow Table) holding a prediction."""
    from flameqa.fit.camera import PinholeCamera
    from flameqa.io.schema import conform
    from flameqa.security import sanitize_id

    T = pm.n_frames
    z3 = np.zeros((T, 3), np.float32)
    cid = sanitize_id(clip_id)
    row = {
        "clip_id": cid, "video_id": cid, "track_id": 0, "segment": 0, "model_id": pm.model_id, "fps": float(pm.fps),
        "frame_idx": np.arange(T, dtype=np.int32).tolist(), "valid": [True] * T,
        "shape": (np.asarray(shape, np.float32) if shape is not None else np.zeros(0, np.float32)).tolist(),
        "expression": pm.expression, "jaw": pm.jaw, "neck": pm.neck, "global_pose": z3,
        "eyes": np.zeros((T, 6), np.float32), "transl": np.tile(np.asarray(_TRANSL, np.float32), (T, 1)),
        "camera": PinholeCamera.from_vfov(512, 512).to_json(),
        "fit_rmse_px": [0.0] * T, "nme": [0.0] * T, "jitter_ratio": None, "converged": True, "iterations": 0,
        "status": "predicted", "error": None,
    }  # fmt: skip
    table = conform("flame", [row])
    meta = {**(table.schema.metadata or {}), b"flameqa.predicted": json.dumps({"identity": pm.identity}).encode()}
    return table.replace_schema_metadata(meta)


def predict_file(
    ckpt: str | os.PathLike, audio: str | os.PathLike, out: str | os.PathLike, identity: str | None = None, question: str | None = None, device: str = "cpu"
) -> Path:
    """``audio`` wav → ``out`` parquet (temp file + rename). Returns ``out``."""
    import pyarrow.parquet as pq

    pm = predict_motion(ckpt, audio, identity=identity, question=question, device=device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(motion_table(pm, Path(audio).stem), tmp)
    os.replace(tmp, out)
    log.info("wrote %d frames at %g fps to %s", pm.n_frames, pm.fps, out)
    return out
