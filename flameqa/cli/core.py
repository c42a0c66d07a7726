"""Core commands: run, ingest, inspect."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import app

log = logging.getLogger("flameqa")

ConfigOpt = typer.Option(None, "--config", "-c", help="Pipeline YAML (default: built-in defaults).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config value: section.key=value (repeatable).")


def build_config(config: Optional[Path], overrides: Optional[list[str]], workers: Optional[int] = None, overwrite: bool = False, executor: Optional[str] = None, address: Optional[str] = None):
    """Load the pipeline config and fold CLI flags in as overrides (one source of truth: the config)."""
    from flameqa.config import ConfigError, load_config

    ov = list(overrides or [])
    if workers is not None:
        ov.append(f"runner.workers={workers}")
    if overwrite:
        ov.append("runner.overwrite=true")
    if executor is not None:
        ov.append(f"runner.executor={executor}")
    if address is not None:
        ov += ["runner.executor=ray", f"ray.address={address}"]
    try:
        return load_config(config, ov)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None


def run_stages(stages: list[str] | None, out: Path, config: Optional[Path], overrides, workers=None, overwrite=False, executor=None, inputs=None, address=None) -> None:
    from flameqa.inspect import format_summary, summarize
    from flameqa.runner import run_pipeline

    from flameqa.ingest.manifest import ManifestError
    from flameqa.io.shards import DiskSpaceError
    from flameqa.runner import PreflightError

    cfg = build_config(config, overrides, workers, overwrite, executor, address)
    try:
        report = run_pipeline(cfg, out, inputs=inputs, stages=stages)
    except (ManifestError, DiskSpaceError, PermissionError, PreflightError, ConnectionError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_summary(summarize(out)))
    for st in report.stages:
        if getattr(st, "start_error", None):
            typer.echo(f"error: {st.start_error}", err=True)
            raise typer.Exit(1)
    if not report.ok:
        failed = [f"{s.stage}:{r.shard:05d}" for s in report.stages for r in s.failed_shards]
        typer.echo(f"failed shards (rerun to retry): {failed}", err=True)
        raise typer.Exit(1)


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML, e.g. pipelines/demo.yaml."),
    input: list[str] = typer.Option(..., "--input", "-i", help="Manifest (csv/tsv/jsonl/parquet), folder or glob."),
    out: Path = typer.Option(..., "--out", "-o"),
    set_: Optional[list[str]] = SetOpt,
    workers: Optional[int] = typer.Option(None, help="Local executor processes."),
    executor: Optional[str] = typer.Option(None, help="local | ray"),
    address: Optional[str] = typer.Option(None, help="Ray cluster to join (auto, ray://host:10001); implies --executor ray."),
    overwrite: bool = typer.Option(False, help="Redo shards that are already complete."),
) -> None:
    """Run every stage of PIPELINE over the input videos."""
    run_stages(None, out, pipeline, set_, workers, overwrite, executor, inputs=input, address=address)


@app.command()
def ingest(
    input: list[str] = typer.Option(..., "--input", "-i", help="Manifest (csv/tsv/jsonl/parquet), folder or glob."),
    out: Path = typer.Option(..., "--out", "-o"),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    workers: Optional[int] = typer.Option(None),
    overwrite: bool = typer.Option(False),
) -> None:
    """Probe inputs, extract 16 kHz audio, find shots: tables `videos` and `clips`."""
    run_stages(["ingest"], out, config, set_, workers, overwrite, inputs=input)


@app.command()
def inspect(out: Path = typer.Argument(...), json_: bool = typer.Option(False, "--json")) -> None:
    """Tables, row counts, statuses and failure reasons of an output folder."""
    from flameqa.inspect import format_summary, summarize, to_json

    s = summarize(out)
    typer.echo(to_json(s) if json_ else format_summary(s))
