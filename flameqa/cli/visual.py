"""Seeing the data: demo, render, report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import app


@app.command()
def demo(out: Path = typer.Option(Path("demo_out"), "--out", "-o"), train: bool = typer.Option(True, help="Also train the reference model briefly.")) -> None:
    """Run the whole pipeline on shipped media (CPU, a few minutes) and print where everything is."""
    from rich.console import Console
    from rich.table import Table

    from flameqa.demo import run_demo

    res = run_demo(out, train=train)
    con = Console()
    t = Table(title="flameqa demo outputs", show_lines=False)
    t.add_column("output")
    t.add_column("path")
    for k, v in res.outputs.items():
        t.add_row(k, str(v))
    con.print(t)
    s = Table(title="summary")
    s.add_column("figure")
    s.add_column("value")
    for k, v in res.summary.items():
        s.add_row(k, str(v))
    s.add_row("seconds per step", ", ".join(f"{k} {v}" for k, v in res.steps.items()))
    con.print(s)
    if res.errors:
        for k, v in res.errors.items():
            con.print(f"[red]step {k} failed:[/red] {v}")
        raise typer.Exit(1)


@app.command()
def render(
    out: Path = typer.Argument(..., help="Pipeline output folder."),
    sample: Optional[str] = typer.Option(None, "--sample", help="Sample id (renders its answer span)."),
    clip: Optional[str] = typer.Option(None, "--clip", help="Clip id (renders the whole clip)."),
    motion: Optional[Path] = typer.Option(None, "--motion", help="A predicted motion parquet to render instead of the fit."),
    dest: Path = typer.Option(..., "--out", "-o", help="Video to write (.mp4)."),
    mode: str = typer.Option("shaded", help="shaded | wireframe"),
) -> None:
    """Source frames with the fitted mesh overlaid, side by side with a frontal mesh view."""
    from flameqa.render.video import render as do_render

    typer.echo(do_render(out, sample_id=sample, clip_id=clip, motion=motion, dest=dest, mode=mode))


@app.command()
def report(out: Path = typer.Argument(...), html: Optional[Path] = typer.Option(None, "--html")) -> None:
    """Self-contained HTML QC report of an output folder."""
    from flameqa.report import build_report

    typer.echo(build_report(out, html))
