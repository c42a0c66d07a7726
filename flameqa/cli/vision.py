"""Face commands: ``flameqa faces`` and ``flameqa bench faces``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import app, bench_app
from flameqa.cli.core import ConfigOpt, SetOpt, build_config, run_stages


@app.command()
def faces(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder holding the `clips` (and `speech`) tables."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    workers: Optional[int] = typer.Option(None, help="Local executor processes (MediaPipe is CPU-bound: one per core)."),
    overwrite: bool = typer.Option(False, help="Redo shards that are already complete."),
) -> None:
    """Landmarks, face tracks and active speakers: tables `faces` and `speakers_faces`."""
    run_stages(["faces", "speakers"], out, config, set_, workers, overwrite)


@bench_app.command("faces")
def bench_faces(
    video: Path = typer.Option(..., "--video", exists=True, dir_okay=False, help="A talking-head video."),
    json_: bool = typer.Option(False, "--json", help="Print one JSON object."),
    workers: int = typer.Option(1, help="Processes for the stage run."),
    pool: str = typer.Option("workers", help="workers: one shard per executor worker process; inner: one shard over the stage's own processes (one video in a pipeline run)."),
    frames: Optional[int] = typer.Option(None, help="Frames for the raw landmarker figure, in chunks spread over the video (default: all of them)."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Raw MediaPipe fps vs end-to-end faces-stage fps on VIDEO."""
    from flameqa.vision.bench import bench_faces as run

    res = run(video, workers=workers, cfg=build_config(config, set_), max_frames=frames, pool=pool)
    if json_:
        typer.echo(json.dumps(res))
    else:
        for k, v in res.items():
            typer.echo(f"{k:>16}: {v}")
