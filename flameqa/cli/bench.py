"""``flameqa bench pipeline``: end-to-end throughput of the whole pipeline on one video (JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import bench_app
from flameqa.cli.core import ConfigOpt, SetOpt, build_config


@bench_app.command("pipeline")
def bench_pipeline(
    video: Path = typer.Option(..., "--video", exists=True, dir_okay=False, help="A talking-head video."),
    repeat: int = typer.Option(1, "--repeat", min=1, help="Concatenate this many copies of VIDEO (no re-encode) for a longer input."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    workers: Optional[int] = typer.Option(None, help="Local executor processes (default: the config's)."),
    videos: int = typer.Option(1, "--videos", min=1, help="Feed the (concatenated) video this many times as separate inputs (several shards to share)."),
    limits: list[str] = typer.Option(["bottleneck"], "--limit", help="Stages whose raw engine is timed after the run: bottleneck, all, or stage names (repeatable)."),
    keep: Optional[Path] = typer.Option(None, "--keep", help="Write the run's output folder here and keep it."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run every stage over VIDEO; print real-time factor, per-stage speed, peak RSS and the bottleneck's engine limit."""
    from flameqa.bench.pipeline import bench_pipeline as run
    from flameqa.runner import PreflightError

    cfg = build_config(config, set_)
    try:
        res = run(video, repeat=repeat, cfg=cfg, workers=workers, keep=keep, limits=limits, videos=videos)
    except (ValueError, PreflightError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if json_:
        typer.echo(json.dumps(res))
        return
    for k, v in res.items():
        if k == "stages":
            for s, d in v.items():
                typer.echo(f"{s:>18}: {d['seconds']:8.2f} s  {d['items_per_s']} {d['unit']}/s  {d['realtime']}x real time")
        else:
            typer.echo(f"{k:>18}: {v}")
