"""Fit commands: ``flameqa fit`` (the stage over an output folder) and ``flameqa bench fit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import app, bench_app
from flameqa.cli.core import ConfigOpt, SetOpt, build_config, run_stages


@app.command()
def fit(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder holding the `faces` table."),
    device: Optional[str] = typer.Option(None, help="cuda | cpu | auto (default: the config's, auto)."),
    model: Optional[str] = typer.Option(None, help="FLAME model file, or `demo` (default: the config's)."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    workers: Optional[int] = typer.Option(None, help="Local executor processes."),
    overwrite: bool = typer.Option(False, help="Redo shards that are already complete."),
) -> None:
    """Batched FLAME fitting of every face track: table `flame`."""
    overrides = list(set_ or [])
    if device is not None:
        overrides.append(f"fit.device={device}")
    if model is not None:
        overrides.append(f"fit.model={model}")
    run_stages(["fit"], out, config, overrides, workers, overwrite)


@bench_app.command("fit")
def bench_fit(
    frames: int = typer.Option(10000, help="Synthetic frames to fit."),
    device: str = typer.Option("cpu", help="cpu | cuda | auto."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON object."),
    model: str = typer.Option("demo", help="`demo` or a FLAME model file (with its MediaPipe embedding)."),
    preset: str = typer.Option(
        "tracking", help="Smoothing preset: `tracking` follows the benchmark's 2-4 Hz speech motion; `dataset` smooths it by design."
    ),
    track_frames: int = typer.Option(250, help="Frames per synthetic track (10 s at 25 fps)."),
    noise_px: float = typer.Option(1.0, help="Landmark noise σ, pixels per coordinate."),
    seed: int = typer.Option(0),
    workers: Optional[int] = typer.Option(None, help="CPU processes, one torch thread each (default: one per core; 1: in-process)."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Fit random plausible FLAME sequences projected to 512×512 with known ground truth; print accuracy and speed."""
    import os

    from flameqa.fit.synth import run_benchmark

    cfg = build_config(config, [f"fit.smooth.preset={preset}", *(set_ or [])])
    n_workers = workers if workers is not None else (os.cpu_count() or 1) if device == "cpu" else 1
    res = run_benchmark(
        frames, device=device, model=model, config=cfg.fit, track_frames=track_frames, noise_px=noise_px, seed=seed, workers=n_workers
    )
    if json_:
        typer.echo(json.dumps(res))
    else:
        for k, v in res.items():
            typer.echo(f"{k:>20}: {v}")
