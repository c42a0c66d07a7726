"""Checkpoints: one ``torch.save`` dict of tensors and plain values, read back with
``torch.load(weights_only=True)`` (no arbitrary unpickling of a downloaded checkpoint).

Contents: format/version, the resolved :class:`TrainConfig` (JSON), step, model / tokenizer /
optimizer / scheduler / grad-scaler states, RNG states (torch, CUDA, python), the sampler position,
normalisation statistics, baseline coefficients, the train/val identities and the best
validation result so far. Written to a temp name and renamed.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flameqa.train.config import TrainConfig
from flameqa.train.data import NormStats, motion_dim
from flameqa.train.metrics import EnergyJawBaseline
from flameqa.train.models import MotionTokenizer, SpeechToMotion

__all__ = ["CKPT_FORMAT", "CKPT_VERSION", "save_checkpoint", "read_checkpoint", "Checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "build_models"]

CKPT_FORMAT = "flameqa.train"
CKPT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a flameqa training checkpoint, or one from an incompatible version."""


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": CKPT_FORMAT, "version": CKPT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():  # a run folder
        p = p / "checkpoints" / "last.pt"
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist (pass a .pt file or a run folder with checkpoints/last.pt)")
    try:
        d = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for foreign/corrupt files
        raise CheckpointError(f"{p}: not a readable flameqa checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or d.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{p}: not a flameqa training checkpoint")
    if int(d.get("version", 0)) > CKPT_VERSION:
        raise CheckpointError(f"{p}: checkpoint version {d.get('version')} is newer than this flameqa ({CKPT_VERSION}); upgrade flameqa")
    return d


def build_models(cfg: TrainConfig) -> tuple[SpeechToMotion, MotionTokenizer | None]:
    d = motion_dim(cfg.data.n_expr)
    buckets = cfg.data.text_buckets if cfg.model.text_conditioning else 0
    model = SpeechToMotion(cfg.model, cfg.data.n_mels, cfg.data.frames_per_motion_frame, d, buckets)
    tok = MotionTokenizer(cfg.tokenizer, d) if cfg.tokenizer.enabled else None
    return model, tok


@dataclass
class Checkpoint:
    """What prediction and evaluation need from a checkpoint (models in eval mode)."""

    path: Path
    config: TrainConfig
    step: int
    model: SpeechToMotion
    tokenizer: MotionTokenizer | None
    stats: NormStats
    energy_jaw: EnergyJawBaseline
    train_identities: list[str]
    val_identities: list[str]
    raw: dict[str, Any]


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    d = read_checkpoint(path)
    cfg = TrainConfig.model_validate(d["config"])
    model, tok = build_models(cfg)
    model.load_state_dict(d["model"])
    if tok is not None and d.get("tokenizer") is not None:
        tok.load_state_dict(d["tokenizer"])
    model.to(device).eval()
    if tok is not None:
        tok.to(device).eval()
    p = Path(path)
    return Checkpoint(
        path=p if p.is_file() else p / "checkpoints" / "last.pt",
        config=cfg,
        step=int(d["step"]),
        model=model,
        tokenizer=tok,
        stats=NormStats.from_state(d["stats"]),
        energy_jaw=EnergyJawBaseline.from_state(d["baselines"]["energy_jaw"]),
        train_identities=list(d["identities"]["train"]),
        val_identities=list(d["identities"]["val"]),
        raw=d,
    )
