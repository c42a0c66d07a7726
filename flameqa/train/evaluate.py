"""Evaluate a speech → motion model, its tokenizer's reconstruction and the baselines side by side.

Every method sees the same per-identity statistics (``eval.identity_stats``) and goes through the
same FLAME-format layer (:class:`~flameqa.train.metrics.VertexEvaluator`).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from flameqa.train.config import EvalConfig
from flameqa.train.data import MotionSequence, NormStats, sequence_tensors
from flameqa.train.metrics import (
    METRIC_DIRECTIONS,
    EnergyJawBaseline,
    MeanMotionBaseline,
    VertexEvaluator,
    aggregate,
    sequence_metrics,
)
from flameqa.train.models import MotionTokenizer, SpeechToMotion

log = logging.getLogger(__name__)

__all__ = ["identity_mean_std", "predict_sequence", "evaluate_sequences", "evaluate_checkpoint", "format_table"]

MeanStd = tuple[np.ndarray, np.ndarray]


def identity_mean_std(seqs: list[MotionSequence], stats: NormStats, mode: str) -> dict[str, MeanStd]:
    """Per identity (mean, std) ``[D]``: ``reference`` → from its own sequences; ``global`` → the
    training statistics of that identity when known, the pooled ones otherwise."""
    by_id: dict[str, list[MotionSequence]] = defaultdict(list)
    for s in seqs:
        by_id[s.identity].append(s)
    if mode == "reference":
        return {i: stats.reference(v) for i, v in by_id.items()}
    return {i: stats.for_identity(i) for i in by_id}


@torch.no_grad()
def predict_sequence(model: SpeechToMotion, seq: MotionSequence, stats: NormStats, mean_std: MeanStd, device: torch.device | str = "cpu") -> np.ndarray:
    """Raw-unit motion ``[T, D]`` for a whole sequence."""
    b = sequence_tensors(seq, stats, mean_std)
    y = model(b["feats"].to(device), b["text"].to(device))[0].float().cpu().numpy()
    return y * mean_std[1] + mean_std[0]


@torch.no_grad()
def reconstruct_sequence(tok: MotionTokenizer, seq: MotionSequence, mean_std: MeanStd, device: torch.device | str = "cpu") -> np.ndarray:
    m, s = mean_std
    x = torch.from_numpy(((seq.motion - m) / s).astype(np.float32))[None].to(device)
    rec = tok(x)[0][0].float().cpu().numpy()
    return rec * s + m


def evaluate_sequences(
    seqs: list[MotionSequence],
    stats: NormStats,
    ev: VertexEvaluator,
    cfg: EvalConfig,
    n_expr: int,
    model: SpeechToMotion | None = None,
    tokenizer: MotionTokenizer | None = None,
    energy_jaw: EnergyJawBaseline | None = None,
    baselines: bool = True,
    device: torch.device | str = "cpu",
    cache: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{method: aggregated metrics}`` for ``model``, ``tokenizer_recon``, ``mean_motion``, ``energy_jaw``.

    ``cache`` keeps ground-truth vertices by sample id across calls (periodic evaluation)."""
    if cfg.max_sequences is not None:
        seqs = seqs[: cfg.max_sequences]
    if not seqs:
        return {}
    ms = identity_mean_std(seqs, stats, cfg.identity_stats)
    methods: dict[str, Any] = {}
    was = {}
    if model is not None:
        was["model"] = model.training
        model.eval()
        methods["model"] = lambda s, m: predict_sequence(model, s, stats, m, device)
    if tokenizer is not None:
        was["tokenizer"] = tokenizer.training
        tokenizer.eval()
        methods["tokenizer_recon"] = lambda s, m: reconstruct_sequence(tokenizer, s, m, device)
    if baselines:
        methods["mean_motion"] = MeanMotionBaseline().predict
        if energy_jaw is not None:
            methods["energy_jaw"] = energy_jaw.predict
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    cache = cache if cache is not None else {}
    try:
        for s in seqs:
            for name, fn in methods.items():
                per[name].append(sequence_metrics(ev, fn(s, ms[s.identity]), s, n_expr, cfg.max_lag_frames, cache))
    finally:
        if model is not None:
            model.train(was["model"])
        if tokenizer is not None:
            tokenizer.train(was["tokenizer"])
    return {name: aggregate(rows) for name, rows in per.items()}


def evaluate_checkpoint(
    ckpt: str | os.PathLike,
    data: str | os.PathLike,
    split: str | None = None,
    identities: str = "val",
    eval_overrides: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Metrics of a checkpoint's model and the baselines on ``data``.

    ``identities``: ``val`` (the checkpoint's held-out identities; when none of them are in ``data``,
    every identity it was not trained on), ``unseen`` (identities not trained on) or ``all``.
    """
    from flameqa.train.checkpoint import load_checkpoint
    from flameqa.train.data import load_sequences

    ck = load_checkpoint(ckpt, device)
    cfg = ck.config
    dcfg = cfg.data.model_copy(update={"split": split if split is not None else cfg.data.split, "streaming": False, "max_samples": None})
    ecfg = cfg.eval.model_copy(update=eval_overrides or {})
    seqs, skipped = load_sequences(data, dcfg)
    train_ids = set(ck.train_identities)
    if identities == "all":
        pick = seqs
    else:
        unseen = [s for s in seqs if s.identity not in train_ids]
        val = [s for s in seqs if s.identity in set(ck.val_identities)]
        pick = val if identities == "val" and val else unseen
    if not pick:
        have = sorted({s.identity for s in seqs})
        raise ValueError(
            f"{data}: no sequences of identities the checkpoint was not trained on (data has {have[:10]}{'...' if len(have) > 10 else ''}; "
            f"trained on {sorted(train_ids)[:10]}); pass identities='all' to evaluate on seen identities"
        )
    ev = VertexEvaluator(ecfg.flame_model, ecfg.masks, ecfg.n_shape, ecfg.include_neck)
    from flameqa.train.loop import check_model_ids

    check_model_ids(sorted({s.model_id for s in pick if s.model_id}), ev.model_id)
    res = evaluate_sequences(pick, ck.stats, ev, ecfg, cfg.data.n_expr, ck.model, ck.tokenizer, ck.energy_jaw, device=device)
    return {
        "checkpoint": str(ck.path),
        "step": ck.step,
        "data": str(data),
        "identities": sorted({s.identity for s in pick}),
        "sequences": len(pick),
        "skipped": len(skipped),
        "flame_model": ev.model_id,
        "regions": ev.regions.source,
        "identity_stats": ecfg.identity_stats,
        "metrics": res,
        "directions": METRIC_DIRECTIONS,
    }


_COLUMNS = [
    ("lve", "LVE mm", 1e3), ("mve", "MVE mm", 1e3), ("fdd", "FDD e-7", 1e7), ("fd_expression", "FD expr", 1.0),
    ("lipsync_corr", "sync r", 1.0), ("jaw_energy_corr", "jaw~E r", 1.0), ("jaw_energy_gap", "|Δ gt|", 1.0),
    ("jitter", "jitter", 1.0), ("neck_mae", "neck rad", 1.0),
]  # fmt: skip


def _cell(v: Any, scale: float) -> str:
    """One table cell: ``v * scale`` to 4 significant digits, ``-`` when missing or not finite."""
    if v is None:
        return "-"
    try:
        x = float(v) * scale
    except (TypeError, ValueError):
        return "-"
    return f"{x:.4g}" if np.isfinite(x) else "-"


def format_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Methods side by side as a fixed-width text table (``jaw~E r`` of ground truth in the last row).

    Column widths follow the widest cell and columns are separated by two spaces: a fixed width
    ran cells together when a value needed all of it (``0.395-2.588e-08``).
    """
    rows = [[name] + [_cell(m.get(k), s) for k, _, s in _COLUMNS] for name, m in metrics.items()]
    any_m = next(iter(metrics.values()), {})
    if any_m:
        gt = {"jaw_energy_corr": any_m.get("jaw_energy_corr_gt"), "jitter": any_m.get("jitter_gt")}
        rows.append(["ground truth"] + [_cell(gt.get(k), s) for k, _, s in _COLUMNS])
    head = ["method"] + [c[1] for c in _COLUMNS]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    text = line(head)
    return "\n".join([text, "-" * len(text), *map(line, rows)])
