"""The training loop: data → (speech → motion model + motion tokenizer) → checkpoints and metrics.

``train(data, out, cfg)`` writes under ``out``::

    config.yaml              the resolved TrainConfig
    metrics.jsonl            one JSON object per log/eval event ({"step", "kind", ...})
    metrics.json             the final validation metrics (model, tokenizer_recon, baselines)
    checkpoints/last.pt      the latest state (resume point); step-NNNNNNN.pt (kept: keep_checkpoints); best.pt
    tb/                      TensorBoard events, when tensorboard is importable

Resuming (the default when ``checkpoints/last.pt`` exists) restores model, tokenizer, optimizer,
scheduler, grad scaler, RNG states and the sampler position (batch b is a pure function of
(seed, b)), and cuts ``metrics.jsonl`` back to the checkpoint's step, so an interrupted run ends
with the same weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from flameqa.train.checkpoint import build_models, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from flameqa.train.config import TrainConfig
from flameqa.train.data import (
    MotionSequence,
    NormStats,
    StreamingWindows,
    WindowBatchSampler,
    WindowDataset,
    collate_windows,
    is_val_identity,
    is_val_row,
    iter_rows,
    load_sequences,
    make_featurizer,
    split_identities,
)
from flameqa.train.evaluate import evaluate_sequences
from flameqa.train.metrics import EnergyJawBaseline, VertexEvaluator, vertex_dim_weights

log = logging.getLogger(__name__)

__all__ = ["TrainData", "prepare_data", "train", "train_step", "masked_losses", "StopTraining", "check_model_ids", "build_optimizer"]

# settings that may change between an interrupted run and its resumption
_RESUMABLE_CHANGES = {("train", "max_steps"), ("train", "eval_every"), ("train", "ckpt_every"), ("train", "log_every"),
                      ("train", "keep_checkpoints"), ("train", "device"), ("train", "threads"), ("data", "num_workers")}  # fmt: skip


class StopTraining(Exception):
    """Raised by a step callback to stop cleanly (the last checkpoint stays the resume point)."""


@dataclass
class TrainData:
    source: str
    train: list[MotionSequence]
    """Training sequences (streaming: only the prefix read for statistics and baselines)."""
    val: list[MotionSequence]
    train_identities: list[str]
    val_identities: list[str]
    stats: NormStats
    skipped: list[dict[str, str]] = field(default_factory=list)
    streaming: bool = False


def prepare_data(source: str | os.PathLike, cfg: TrainConfig, stats: NormStats | None = None, identities: dict[str, list[str]] | None = None) -> TrainData:
    """Load (or, streaming, sample the head of) the dataset, split by identity, fit statistics.

    ``stats``/``identities`` from a checkpoint are reused as they are (resume)."""
    d = cfg.data
    seed = cfg.train.seed
    feat = make_featurizer(d)
    if d.streaming:
        head = []
        for n, row in enumerate(iter_rows(source, d.split, streaming=True)):
            if n >= d.stats_samples or (d.max_samples is not None and n >= d.max_samples):
                break
            head.append(row)
        seqs, skipped = load_sequences(source, d.model_copy(update={"streaming": False}), feat, rows=head)
    else:
        seqs, skipped = load_sequences(source, d, feat)
    if identities is not None:  # resume: the checkpoint's split
        train_ids, val_ids = identities["train"], identities["val"]
    elif d.val_split is not None:
        val_ids = sorted({s.identity for s in seqs if s.split == d.val_split})
        train_ids = sorted({s.identity for s in seqs} - set(val_ids))
        if not val_ids:
            log.warning("data.val_split=%r has no samples: no validation", d.val_split)
    elif d.streaming:
        val_ids = sorted({s.identity for s in seqs if is_val_identity(s.identity, d, seed)})
        train_ids = sorted({s.identity for s in seqs} - set(val_ids))
    else:
        train_ids, val_ids = split_identities((s.identity for s in seqs), d, seed)
    train_seqs = [s for s in seqs if s.identity in set(train_ids)]
    val = [s for s in seqs if s.identity in set(val_ids)]
    if not train_seqs:
        raise ValueError(f"{source}: no usable training sequences ({len(seqs)} read, {len(skipped)} skipped; identities {train_ids + val_ids})")
    stats = stats or NormStats.fit(train_seqs)
    log.info("data: %d train sequences (%d identities), %d val sequences (%d identities), %d skipped",
             len(train_seqs), len(train_ids), len(val), len(val_ids), len(skipped))  # fmt: skip
    return TrainData(str(source), train_seqs, val, list(train_ids), list(val_ids), stats, skipped, d.streaming)


def masked_losses(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-frame MSE, velocity MSE) over valid frames, dimensions weighted by ``weight [D]``
    (mean 1 keeps the scale); ``pred/target [B, T, D]``, ``mask [B, T]``."""
    w = weight if weight is not None else pred.new_ones(pred.shape[-1])
    m = mask[..., None]
    pos = ((pred - target) ** 2 * m * w).sum() / (m.sum() * pred.shape[-1]).clamp(min=1)
    mv = (mask[:, 1:] * mask[:, :-1])[..., None]
    dv = (pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])
    vel = (dv**2 * mv * w).sum() / (mv.sum() * pred.shape[-1]).clamp(min=1)
    return pos, vel


def train_step(model, tok, opt, sched, scaler, params, batch: dict[str, torch.Tensor], cfg: TrainConfig, weight: torch.Tensor, amp_dtype: torch.dtype | None) -> dict[str, float]:
    """One optimizer step on a batch (already on the device); returns the losses."""
    device_type = batch["feats"].device.type
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        pred = model(batch["feats"], batch["text"])
    pos, vel = masked_losses(pred.float(), batch["motion"], batch["mask"], weight)
    loss = pos + cfg.loss.velocity_weight * vel
    tl = torch.zeros((), device=pred.device)
    if tok is not None:
        rec, _, commit = tok(batch["motion"])  # fp32: codebook distances need the precision
        rpos, rvel = masked_losses(rec, batch["motion"], batch["mask"], weight)
        tl = rpos + cfg.loss.velocity_weight * rvel + cfg.tokenizer.commitment * commit
        loss = loss + cfg.tokenizer.weight * tl
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
    scaler.step(opt)
    scaler.update()
    sched.step()
    return {"loss": loss.item(), "motion": pos.item(), "velocity": vel.item(), "tokenizer": tl.item()}


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    o, n = cfg.optim, cfg.train.max_steps

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        p = min(1.0, (step - o.warmup_steps) / max(1, n - o.warmup_steps))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))

    return f


def check_model_ids(data_ids: list[str], eval_id: str) -> None:
    """Vertex metrics need the model the motion was fitted with: refuse the demo head for FLAME
    motion (and the reverse); warn on other mismatches (model ids come from file names)."""
    demo = "flameqa-demo-head"
    if not data_ids:
        return
    if (eval_id == demo) != all(i == demo for i in data_ids):
        raise ValueError(
            f"the data's motion is for model(s) {data_ids} but eval.flame_model gives {eval_id!r}: "
            "set eval.flame_model to the FLAME file the data was fitted with (and eval.masks to FLAME_masks.pkl)"
        )
    if eval_id != demo and eval_id not in data_ids:
        log.warning("data model ids %s differ from the evaluation model %r: vertex metrics assume they are the same model", data_ids, eval_id)


def build_optimizer(cfg: TrainConfig, params, device: torch.device):
    """AdamW, warmup + cosine schedule, grad scaler (fp16 only) and the autocast dtype (None: fp32)."""
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    amp_dtype = None
    if device.type == "cuda" and cfg.train.precision != "fp32":
        amp_dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return opt, sched, scaler, amp_dtype


def _device(cfg: TrainConfig) -> torch.device:
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available; use train.device=auto or cpu")
    return torch.device("cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu")


class _Metrics:
    """metrics.jsonl (+ TensorBoard when importable)."""

    def __init__(self, out: Path, keep_until: int | None) -> None:
        self.path = out / "metrics.jsonl"
        lines = []
        if keep_until is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= keep_until:
                        lines.append(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a crash
        self.path.write_text("".join(x + "\n" for x in lines))
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=keep_until + 1 if keep_until is not None else None)
        except ImportError:
            log.info("tensorboard is not installed: metrics go to %s only", self.path)

    def write(self, rec: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        if self.tb is not None:
            kind = rec.get("kind", "")
            for k, v in _flat(rec).items():
                if isinstance(v, (int, float)) and k not in ("step",):
                    self.tb.add_scalar(f"{kind}/{k}", v, rec.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _compat(saved: dict[str, Any], cfg: TrainConfig, where: Path) -> None:
    now = cfg.model_dump(mode="json")
    diffs = []
    for sec, vals in now.items():
        if not isinstance(vals, dict):
            if saved.get(sec) != vals:
                diffs.append((sec,))
            continue
        for k, v in vals.items():
            if sec != "eval" and (sec, k) not in _RESUMABLE_CHANGES and saved.get(sec, {}).get(k) != v:
                diffs.append((sec, k))
    if diffs:
        names = ", ".join(".".join(d) for d in diffs)
        raise ValueError(f"{where}: cannot resume: the config changed ({names}); pass --no-resume to start over, or a new --out")


def _prune(ckdir: Path, keep: int) -> None:
    steps = sorted(ckdir.glob("step-*.pt"))
    for p in steps[: max(0, len(steps) - keep)]:
        p.unlink(missing_ok=True)


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig = TrainConfig(),
    resume: bool = True,
    progress: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train on ``data`` (dataset folder or Hub id) into ``out``; returns the final validation metrics.

    ``on_step(step, losses)`` runs after every optimizer step (after any checkpoint of that step);
    raising :class:`StopTraining` there stops cleanly, any other exception propagates (a crash).
    """
    device = _device(cfg)
    out = Path(out)
    ckdir = out / "checkpoints"
    last = ckdir / "last.pt"
    saved = None
    if last.exists():
        if resume:
            saved = read_checkpoint(last)
            _compat(saved["config"], cfg, last)
            log.info("resuming from %s (step %d)", last, saved["step"])
        else:
            log.info("--no-resume: starting over in %s (old checkpoints and metrics removed)", out)
            for p in ckdir.glob("*.pt"):
                p.unlink()
            (out / "metrics.jsonl").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed = cfg.train.seed

    td = prepare_data(
        data, cfg,
        stats=NormStats.from_state(saved["stats"]) if saved else None,
        identities=saved["identities"] if saved else None,
    )  # fmt: skip
    n_expr = cfg.data.n_expr
    energy_jaw = EnergyJawBaseline.from_state(saved["baselines"]["energy_jaw"]) if saved else EnergyJawBaseline(n_expr).fit(td.train, td.stats)

    torch.manual_seed(seed)
    random.seed(seed)
    model, tok = build_models(cfg)
    model.to(device)
    params = list(model.parameters())
    if tok is not None:
        tok.to(device)
        params += list(tok.parameters())
    opt, sched, scaler, amp_dtype = build_optimizer(cfg, params, device)
    amp = amp_dtype is not None
    step, best = 0, {"lve": float("inf"), "step": -1}
    if saved:
        model.load_state_dict(saved["model"])
        if tok is not None:
            tok.load_state_dict(saved["tokenizer"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        step, best = int(saved["step"]), dict(saved["best"])

    W, k, bs = cfg.data.window_frames, cfg.data.frames_per_motion_frame, cfg.train.batch_size
    if td.streaming:
        if cfg.data.num_workers:
            log.warning("streaming: data.num_workers=%d ignored (the stream position is the resume state)", cfg.data.num_workers)
        val_ids = set(td.val_identities)
        ds = StreamingWindows(
            lambda: itertools.islice(iter_rows(data, cfg.data.split, streaming=True), cfg.data.max_samples), cfg.data, td.stats, make_featurizer(cfg.data), seed,
            keep=lambda r: not is_val_row(str(r.get("identity")), str(r.get("_split")), cfg.data, seed, val_ids), skip=step * bs,
            base_dir=Path(data) if Path(str(data)).is_dir() else None,
        )  # fmt: skip
        # an explicit generator: creating the iterator must not draw from the global RNG (resume)
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, collate_fn=collate_windows, num_workers=0, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = WindowBatchSampler([s.n_frames for s in td.train], W, bs, seed, start=step)
        loader = torch.utils.data.DataLoader(
            WindowDataset(td.train, td.stats, W, k), batch_sampler=sampler, collate_fn=collate_windows,
            num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
            persistent_workers=cfg.data.num_workers > 0, generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip

    metrics = _Metrics(out, keep_until=step if saved else None)
    ev = VertexEvaluator(cfg.eval.flame_model, cfg.eval.masks, cfg.eval.n_shape, cfg.eval.include_neck)
    model_ids = sorted({s.model_id for s in td.train + td.val if s.model_id})
    check_model_ids(model_ids, ev.model_id)
    data_model_id = model_ids[0] if model_ids else ev.model_id
    if saved:
        dim_w = saved["loss_weights"].numpy()
    else:
        b = cfg.loss.vertex_weighting
        dim_w = (1 - b) + b * vertex_dim_weights(ev, td.stats.global_std, n_expr) if b > 0 else np.ones(td.stats.global_std.shape, np.float32)
        dim_w = (dim_w / dim_w.mean()).astype(np.float32)
    weight = torch.as_tensor(dim_w, device=device)
    if not td.val:
        ev = None
        log.warning("no validation identities: periodic evaluation is skipped (set data.val_fraction > 0 or data.val_identities)")

    def state() -> dict[str, Any]:
        return {
            "config": cfg.model_dump(mode="json"), "step": step, "model": model.state_dict(),
            "tokenizer": tok.state_dict() if tok is not None else None, "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rng_state(), "sampler": {"next_batch": step, "windows": step * bs},
            "stats": td.stats.to_state(), "baselines": {"energy_jaw": energy_jaw.to_state()},
            "identities": {"train": td.train_identities, "val": td.val_identities},
            "loss_weights": torch.as_tensor(dim_w),
            "data": {"source": td.source, "skipped": len(td.skipped), "model_id": data_model_id},
            "best": best,
        }  # fmt: skip

    # ground-truth vertices are the same at every evaluation: keep them while they are small (< 200 MB)
    gt_cache: dict[str, Any] | None = {} if ev is not None and sum(s.n_frames for s in td.val) * ev.layer.n_vertices * 3 < 5e7 else None

    def evaluate(with_baselines: bool) -> dict[str, Any]:
        return evaluate_sequences(
            td.val, td.stats, ev, cfg.eval, n_expr, model, tok, energy_jaw, baselines=with_baselines, device=device, cache=gt_cache
        )  # fmt: skip

    if ev is not None and step == 0:
        metrics.write({"step": 0, "kind": "baselines", **evaluate(True)})

    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn())
        bar.start()
        task = bar.add_task("train", total=cfg.train.max_steps, completed=step, info="")
    model.train()
    if tok is not None:
        tok.train()
    t0, acc = time.perf_counter(), {"loss": 0.0, "motion": 0.0, "velocity": 0.0, "tokenizer": 0.0, "n": 0}
    try:
        it = iter(loader)
        while step < cfg.train.max_steps:
            batch = {kk: v.to(device, non_blocking=True) for kk, v in next(it).items()}
            losses = train_step(model, tok, opt, sched, scaler, params, batch, cfg, weight, amp_dtype if amp else None)
            step += 1
            for kk, v in losses.items():
                acc[kk] += v
            acc["n"] += 1
            if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
                n = acc.pop("n")
                dt = time.perf_counter() - t0
                metrics.write({"step": step, "kind": "train", "lr": sched.get_last_lr()[0], **{kk: v / n for kk, v in acc.items()},
                               "steps_per_s": n / dt if dt > 0 else 0.0})  # fmt: skip
                acc, t0 = {"loss": 0.0, "motion": 0.0, "velocity": 0.0, "tokenizer": 0.0, "n": 0}, time.perf_counter()
            if ev is not None and (step % cfg.train.eval_every == 0 or step == cfg.train.max_steps):
                res = evaluate(False)
                metrics.write({"step": step, "kind": "val", **res})
                if res["model"]["lve"] < best["lve"]:
                    best = {"lve": res["model"]["lve"], "step": step}
                    save_checkpoint(ckdir / "best.pt", state())
            if step % cfg.train.ckpt_every == 0 or step == cfg.train.max_steps:
                st = state()
                save_checkpoint(ckdir / f"step-{step:07d}.pt", st)
                save_checkpoint(last, st)
                _prune(ckdir, cfg.train.keep_checkpoints)
            if bar is not None:
                bar.update(task, completed=step, info=f"loss {losses['loss']:.3f}")
            if on_step is not None:
                on_step(step, losses)
    except StopTraining:
        log.info("stopped at step %d (resume point: %s)", step, last)
    finally:
        if bar is not None:
            bar.stop()
        metrics.close()
    final: dict[str, Any] = {"step": step, "best": best, "train_identities": td.train_identities, "val_identities": td.val_identities}
    if ev is not None and step >= cfg.train.max_steps:
        final["metrics"] = evaluate(True)
        (out / "metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True))
    return final
