"""Reference model: train, predict, eval motion, bench train, synth-qa."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import app, bench_app, eval_app


def _train_config(config: Optional[Path], overrides: Optional[list[str]]):
    from flameqa.train.config import TrainConfigError, load_train_config

    try:
        return load_train_config(config, overrides)
    except TrainConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None


@app.command()
def train(
    data: str = typer.Option(..., "--data", "-d", help="Dataset folder (Hub layout, e.g. an export) or a Hub dataset id."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints/, metrics.jsonl, metrics.json."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Train YAML (e.g. pipelines/train.yaml; default: the cpu preset)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a config value: section.key=value (repeatable)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoints/last.pt when it exists."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Shorthand for --set train.seed=N."),
) -> None:
    """Train the speech → motion reference model (and its motion tokenizer) on FLAME-QA samples."""
    from flameqa.train.evaluate import format_table
    from flameqa.train.loop import train as run_train

    cfg = _train_config(config, list(set_ or []) + ([f"train.seed={seed}"] if seed is not None else []))
    try:
        res = run_train(data, out, cfg, resume=resume, progress=True)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if "metrics" in res:
        typer.echo(f"validation identities {res['val_identities']} (step {res['step']}):")
        typer.echo(format_table(res["metrics"]))
    best = f", best.pt at step {res['best']['step']}" if res["best"]["step"] >= 0 else ""
    typer.echo(f"run: {out} (checkpoints/last.pt{best})")


@app.command()
def predict(
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint (.pt) or run folder."),
    audio: Path = typer.Option(..., "--audio", help="Speech audio (wav/flac; resampled to the model's rate)."),
    out: Path = typer.Option(..., "--out", "-o", help="Motion parquet to write (flame-table columns, 25 fps)."),
    identity: Optional[str] = typer.Option(None, help="A training identity whose resting face/motion range to use."),
    question: Optional[str] = typer.Option(None, help="Question text (for text-conditioned models)."),
) -> None:
    """Predict FLAME motion for an audio file (render it with `flameqa render --motion`)."""
    from flameqa.train.predict import predict_file

    try:
        typer.echo(predict_file(ckpt, audio, out, identity=identity, question=question))
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


@eval_app.command("motion")
def eval_motion(
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint (.pt) or run folder."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset folder or Hub id."),
    split: Optional[str] = typer.Option(None, help="Split(s) to read (default: the training config's)."),
    identities: str = typer.Option("val", help="val (held-out identities) | unseen | all"),
    flame_model: Optional[str] = typer.Option(None, "--flame-model", help="FLAME-format model for vertex metrics (default: the checkpoint's)."),
    masks: Optional[str] = typer.Option(None, "--masks", help="FLAME_masks.pkl (needed for a FLAME model)."),
    json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """LVE, MVE, FDD, expression FD, lip sync, jitter: the model next to the baselines."""
    from flameqa.train.evaluate import evaluate_checkpoint, format_table

    over = {k: v for k, v in (("flame_model", flame_model), ("masks", masks)) if v is not None}
    if identities not in ("val", "unseen", "all"):
        typer.echo(f"--identities must be val, unseen or all, got {identities!r}", err=True)
        raise typer.Exit(2)
    if json_:  # the CLI's log handler writes to stdout: keep the JSON parseable
        import logging

        logging.getLogger("flameqa.train").setLevel(logging.WARNING)
    try:
        res = evaluate_checkpoint(ckpt, data, split=split, identities=identities, eval_overrides=over)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if json_:
        typer.echo(json.dumps(res, indent=1, sort_keys=True))
    else:
        typer.echo(f"{res['sequences']} sequences of {res['identities']} through {res['flame_model']} (step {res['step']})")
        typer.echo(format_table(res["metrics"]))


@bench_app.command("train")
def bench_train(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset to time on (default: a generated synthetic one)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    steps: int = typer.Option(30, help="Timed training steps."),
    json_: bool = typer.Option(True, "--json/--no-json", help="Print JSON (the default)."),
) -> None:
    """Training steps/s and samples/s, and data-loader throughput relative to what a step consumes."""
    import logging

    from flameqa.train.bench import bench_training

    if json_:  # the CLI's log handler writes to stdout: keep the JSON parseable
        logging.getLogger("flameqa.train").setLevel(logging.WARNING)

    res = bench_training(data, _train_config(config, None), steps=steps)
    typer.echo(json.dumps(res, indent=1) if json_ else "\n".join(f"{k}: {v}" for k, v in res.items()))


@app.command("synth-qa")
def synth_qa(
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (Hub layout)."),
    identities: int = typer.Option(6, help="Answerer identities."),
    samples: int = typer.Option(6, help="Samples per identity."),
    seed: int = typer.Option(0),
) -> None:
    """Write a synthetic FLAME-QA dataset with known speech → motion structure (demo head motion)."""
    from flameqa.train.synth import SynthConfig, make_synthetic_dataset

    typer.echo(make_synthetic_dataset(out, SynthConfig(n_identities=identities, samples_per_identity=samples, seed=seed)))
