"""Typed configs of the reference speech → motion trainer (one per component; the tree mirrors the objects).

``pipelines/train.yaml`` holds a :class:`TrainConfig`. Its ``preset`` picks the defaults the file's
values override: ``cpu`` (tiny, seconds per hundred steps on a laptop core, what tests and the demo
use) or ``gpu`` (wider and deeper, mixed precision, loader workers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError, model_validator

from flameqa.configbase import Config


class DataConfig(Config):
    split: str | None = None
    """Dataset split(s) to read (``train``, ``train+test``); None reads every split. Train/val are
    then split by identity, whatever the dataset's own splits are."""
    streaming: bool = False
    """Stream the dataset (``datasets`` streaming mode) instead of loading it into memory."""
    n_expr: int = 50
    """Expression coefficients the model predicts (the first N of the stored 100)."""
    sample_rate: int = 16000
    fps: float = 25.0
    """Motion frame rate the model works at; samples at another fps are skipped with a warning."""
    frames_per_motion_frame: int = 2
    """Log-mel frames per motion frame (2 at 25 fps and 16 kHz: hop 320 samples, 20 ms)."""
    n_mels: int = 40
    window_s: float = 0.04
    """Analysis window of one log-mel frame, seconds (ends at the frame's end: causal)."""
    window_frames: int = 50
    """Training window length in motion frames (2 s at 25 fps)."""
    val_split: str | None = None
    """Use this dataset split (e.g. ``test``: the exporter assigns whole identities to a split) for
    validation, and every identity in it is kept out of training; None: split identities by hash."""
    val_identities: tuple[str, ...] = ()
    """Identities held out for validation; empty → ``val_fraction`` of them, chosen by a seeded hash."""
    val_fraction: float = 0.25
    min_frames: int = 8
    """Sequences shorter than this are skipped."""
    text_buckets: int = 1024
    """Hashing bag-of-words size for the question text (0 disables text features)."""
    max_samples: int | None = None
    """Read at most this many samples (quick experiments)."""
    shuffle_buffer: int = 64
    """Streaming mode: samples held for shuffling."""
    stats_samples: int = 256
    """Streaming mode: samples read up front for normalisation statistics and baselines."""
    num_workers: int = 0
    """DataLoader worker processes (windows are deterministic in (seed, step) whatever this is)."""


class ModelConfig(Config):
    arch: Literal["tcn", "tcn_gru"] = "tcn"
    """Causal dilated convolutions; ``tcn_gru`` adds a unidirectional GRU on top (longer memory)."""
    hidden: int = 64
    layers: int = 4
    """Residual causal conv blocks; dilation doubles per block (receptive field 2**layers frames)."""
    kernel: int = 3
    dropout: float = 0.1
    text_conditioning: bool = True
    """FiLM the hidden state with a hashed bag-of-words embedding of the question."""


class TokenizerConfig(Config):
    enabled: bool = True
    """Train the residual-VQ motion tokenizer alongside the speech model (its own loss, same optimizer)."""
    hidden: int = 64
    code_dim: int = 32
    n_quantizers: int = 6
    codebook_size: int = 128
    downsample: int = 1
    """Temporal downsampling of the latent (1, 2 or 4 motion frames per token)."""
    commitment: float = 0.25
    ema_decay: float = 0.95
    dead_code_threshold: float = 0.5
    """Codes whose EMA usage falls below this are re-seeded from the batch."""
    weight: float = 1.0


class LossConfig(Config):
    velocity_weight: float = 0.5
    """Weight of the first-difference (velocity) error next to the per-frame error."""
    vertex_weighting: float = 0.5
    """Blend of per-dimension loss weights: 0 = every normalised dimension alike; 1 = weights
    proportional to the vertex displacement a dimension causes (eval.flame_model), so the jaw,
    which moves the most vertices, counts the most. Neck dimensions keep weight 1."""


class OptimConfig(Config):
    lr: float = 3e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 20
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0


class LoopConfig(Config):
    max_steps: int = 400
    batch_size: int = 16
    seed: int = 0
    eval_every: int = 100
    ckpt_every: int = 100
    log_every: int = 10
    keep_checkpoints: int = 2
    """Step checkpoints kept besides ``last.pt`` and ``best.pt``."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision on CUDA (autocast); CPU always trains in fp32."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""


class EvalConfig(Config):
    flame_model: str = "demo"
    """FLAME-format model file for vertex metrics, or ``demo`` (the generated demo head, not FLAME)."""
    masks: str | None = None
    """FLAME_masks.pkl (lips, forehead, eye_region); required for a 5023-vertex FLAME model."""
    n_shape: int = 100
    identity_stats: Literal["reference", "global"] = "reference"
    """Normalisation statistics for held-out identities: ``reference`` estimates them from the
    identity's own evaluation sequences (a neutral/style reference, the same for model and baselines);
    ``global`` uses the training pool's."""
    max_lag_frames: int = 5
    """Jaw–audio-energy correlation: best over motion lags 0..N frames."""
    include_neck: bool = False
    """Vertex metrics with the predicted neck rotation (off: face-local expression + jaw only)."""
    max_sequences: int | None = None
    """Evaluate at most this many sequences (periodic evaluation during training)."""


class TrainConfig(Config):
    preset: Literal["cpu", "gpu"] = "cpu"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: LoopConfig = LoopConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if not 1 <= self.data.n_expr <= 100:
            raise ValueError(f"data.n_expr must be in 1..100, got {self.data.n_expr}")
        if self.tokenizer.downsample not in (1, 2, 4):
            raise ValueError(f"tokenizer.downsample must be 1, 2 or 4, got {self.tokenizer.downsample}")
        if self.data.window_frames < 2 * self.tokenizer.downsample:
            raise ValueError(f"data.window_frames={self.data.window_frames} is too short for tokenizer.downsample={self.tokenizer.downsample}")
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # one thread: at these sizes extra threads cost more in sync than they give, worse on a busy machine
    "cpu": {"train": {"threads": 1}},
    "gpu": {
        "data": {"n_expr": 100, "n_mels": 80, "window_frames": 100, "num_workers": 4},
        "model": {"arch": "tcn_gru", "hidden": 256, "layers": 8, "dropout": 0.1},
        "tokenizer": {"hidden": 256, "code_dim": 128, "n_quantizers": 8, "codebook_size": 512, "downsample": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 500},
        "train": {"max_steps": 20000, "batch_size": 64, "eval_every": 1000, "ckpt_every": 1000, "log_every": 50, "precision": "bf16", "device": "cuda"},
    },
}


class TrainConfigError(ValueError):
    """A train config that cannot be used; the message names the key."""


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_train_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a train YAML (or defaults), apply its ``preset`` then ``section.key=value`` overrides."""
    from flameqa.config import ConfigError, apply_overrides, read_yaml_sections

    source = str(path) if path is not None else "defaults"
    try:
        raw: dict[str, Any] = read_yaml_sections(path, "train config") if path is not None else {}
        apply_overrides(raw, overrides)
    except ConfigError as e:
        raise TrainConfigError(str(e)) from None
    preset = raw.get("preset", "cpu")
    if preset not in PRESETS:
        raise TrainConfigError(f"{source}: preset must be one of {sorted(PRESETS)}, got {preset!r}")
    try:
        return TrainConfig.model_validate(_merge(PRESETS[preset], raw))
    except ValidationError as e:
        lines = [f"invalid train config ({source}):"]
        for err in e.errors():
            lines.append(f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}")
        raise TrainConfigError("\n".join(lines)) from None
