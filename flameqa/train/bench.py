"""Training throughput: optimizer steps/s and windows/s, and whether the data loader keeps up.

The loader is timed alone (windows/s out of the DataLoader as configured) and the training step
alone (on batches already drawn), so ``loader_headroom`` = loader windows/s ÷ step windows/s says
how many times faster than the model the data arrives (the goal is ≥ 5).
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from flameqa.train.config import TrainConfig

log = logging.getLogger(__name__)

__all__ = ["bench_training"]


def bench_training(data: str | os.PathLike | None = None, cfg: TrainConfig = TrainConfig(), steps: int = 30, loader_batches: int = 200, warmup: int = 3) -> dict[str, Any]:
    """Time the loader and the step; ``data`` None generates a synthetic dataset in a temp folder."""
    from flameqa.train.checkpoint import build_models
    from flameqa.train.data import WindowBatchSampler, WindowDataset, collate_windows
    from flameqa.train.loop import _device, build_optimizer, prepare_data, train_step

    tmp = None
    if data is None:
        from flameqa.train.synth import SynthConfig, make_synthetic_dataset

        tmp = tempfile.TemporaryDirectory(prefix="flameqa-bench-")
        data = make_synthetic_dataset(Path(tmp.name) / "synth", SynthConfig(n_identities=6, samples_per_identity=6))
    try:
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        device = _device(cfg)
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"streaming": False})})
        t0 = time.perf_counter()
        td = prepare_data(data, cfg)
        load_s = time.perf_counter() - t0
        W, k, bs = cfg.data.window_frames, cfg.data.frames_per_motion_frame, cfg.train.batch_size
        loader = torch.utils.data.DataLoader(
            WindowDataset(td.train, td.stats, W, k), batch_sampler=WindowBatchSampler([s.n_frames for s in td.train], W, bs, cfg.train.seed),
            collate_fn=collate_windows, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
        )  # fmt: skip
        it = iter(loader)
        for _ in range(warmup):
            next(it)
        t0 = time.perf_counter()
        batches = [next(it) for _ in range(loader_batches)]
        loader_s = time.perf_counter() - t0
        del it

        torch.manual_seed(cfg.train.seed)
        model, tok = build_models(cfg)
        model.to(device).train()
        params = list(model.parameters())
        if tok is not None:
            tok.to(device).train()
            params += list(tok.parameters())
        opt, sched, scaler, amp_dtype = build_optimizer(cfg, params, device)
        weight = torch.ones(model.d_motion, device=device)
        dev_batches = [{kk: v.to(device) for kk, v in b.items()} for b in batches[: max(steps, warmup) + warmup]]
        for b in dev_batches[:warmup]:
            train_step(model, tok, opt, sched, scaler, params, b, cfg, weight, amp_dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(steps):
            train_step(model, tok, opt, sched, scaler, params, dev_batches[warmup + i % (len(dev_batches) - warmup)], cfg, weight, amp_dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_s = time.perf_counter() - t0
        steps_per_s = steps / step_s
        loader_windows = loader_batches * bs / loader_s
        step_windows = steps_per_s * bs
        return {
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "precision": cfg.train.precision if device.type == "cuda" else "fp32",
            "train_sequences": len(td.train),
            "data_load_s": round(load_s, 3),
            "batch_size": bs,
            "window_frames": W,
            "model_params": sum(p.numel() for p in model.parameters()),
            "tokenizer_params": sum(p.numel() for p in tok.parameters()) if tok is not None else 0,
            "steps": steps,
            "steps_per_s": round(steps_per_s, 2),
            "samples_per_s": round(step_windows, 1),
            "motion_frames_per_s": round(step_windows * W, 1),
            "loader_workers": cfg.data.num_workers,
            "loader_windows_per_s": round(loader_windows, 1),
            "loader_headroom": round(loader_windows / step_windows, 2),
            "loader_keeps_up": loader_windows >= 5 * step_windows,
        }
    finally:
        if tmp is not None:
            tmp.cleanup()
