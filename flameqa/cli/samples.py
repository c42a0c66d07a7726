"""Sample commands: assemble, export, publish (each a few lines over one library function)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import app

log = logging.getLogger("flameqa")


def _config(out: Path | None, config: Optional[Path], overrides: Optional[list[str]]):
    """The run's config: ``--config``, else ``OUT/config.yaml`` when the run has one, else defaults."""
    from flameqa.config import ConfigError, load_config

    path = config if config is not None else (out / "config.yaml" if out is not None and (out / "config.yaml").is_file() else None)
    try:
        return load_config(path, list(overrides or []))
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None


def _parse_splits(text: str) -> dict[str, float]:
    """``train=0.9,test=0.1`` → {"train": 0.9, "test": 0.1}."""
    res: dict[str, float] = {}
    for part in text.split(","):
        name, sep, frac = part.strip().partition("=")
        try:
            res[name.strip()] = float(frac)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise typer.BadParameter(f"{part!r}: expected name=fraction, e.g. train=0.9,test=0.1", param_hint="--splits")
    return res


@app.command()
def assemble(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder holding speech, words, speakers_faces, flame."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Pipeline YAML (default: OUT/config.yaml, else built-in defaults)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a config value, e.g. assemble.filters.min_answer_s=2."),
    overwrite: bool = typer.Option(False, help="Redo shards that are already complete."),
) -> None:
    """Pair questions and answers (dialogue, monologue), filter them: table `samples`."""
    from flameqa.runner import run_pipeline

    cfg = _config(out, config, [*(set_ or []), *(["runner.overwrite=true"] if overwrite else [])])
    report = run_pipeline(cfg, out, stages=["assemble"])
    rows = sum(r.rows.get("samples", 0) for s in report.stages for r in s.shards)
    skipped = sum(r.skipped for s in report.stages for r in s.shards)
    typer.echo(f"samples: {rows} written" + (f", {skipped} shard(s) already complete" if skipped else ""))
    if not report.ok:
        failed = [f"{s.stage}:{r.shard:05d}" for s in report.stages for r in s.failed_shards]
        typer.echo(f"failed shards (rerun to retry): {failed}", err=True)
        raise typer.Exit(1)


@app.command()
def export(
    out: Path = typer.Argument(..., help="Run folder with a samples table."),
    dest: Path = typer.Option(..., "--dest", "-d", help="Folder to write (laid out as a Hub dataset repo)."),
    splits: Optional[str] = typer.Option(None, help="Split fractions, e.g. train=0.9,test=0.1 (export.splits)."),
    by: Optional[str] = typer.Option(None, help="identity | video | clip: never split across (export.by)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Pipeline YAML (default: OUT/config.yaml)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override, e.g. export.shard_bytes=100000000."),
) -> None:
    """Write README.md (card) + data/<split>-NNNNN-of-NNNNN.parquet; `datasets.load_dataset(DEST)` reads it."""
    import json

    from flameqa.export.hub_folder import export_dataset

    ov = list(set_ or [])
    if splits is not None:
        ov.append(f"export.splits={json.dumps(_parse_splits(splits))}")
    if by is not None:
        ov.append(f"export.by={by}")
    cfg = _config(out, config, ov)
    try:
        rep = export_dataset(out, dest, cfg.export)
    except ValueError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    for s, st in rep.splits.items():
        typer.echo(f"{s}: {st.rows} samples, {st.groups} groups, {len(st.files)} file(s)")
    typer.echo(f"wrote {dest}")


@app.command()
def publish(
    folder: Path = typer.Argument(..., help="An exported folder (flameqa export)."),
    repo_id: str = typer.Option(..., "--repo-id", help="ORG/NAME of the dataset repo (created when missing)."),
    private: bool = typer.Option(False, help="Create the repo private."),
    endpoint: Optional[str] = typer.Option(None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)."),
    revision: Optional[str] = typer.Option(None, help="Branch to commit to."),
) -> None:
    """Upload FOLDER to the Hub (token from HF_TOKEN or `hf auth login`; never pass it here)."""
    from flameqa.export.config import PublishConfig
    from flameqa.export.publish import PublishError, publish_folder

    cfg = PublishConfig(private=private, endpoint=endpoint, revision=revision)
    try:
        rep = publish_folder(folder, repo_id, cfg)
    except PublishError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"published {rep.repo_url} ({len(rep.commits)} commit(s))")
