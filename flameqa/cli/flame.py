"""`flameqa model ...`: inspect FLAME-format model files, write the demo head."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flameqa.cli.app import model_app


@model_app.command("info")
def info(
    path: str = typer.Argument(..., help="Model file (.pkl official FLAME, .npz) or 'demo'."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print what a model file holds: dimensions, joints, landmark embeddings, license note."""
    from flameqa.flame.io import FlameFileError, describe_model
    from flameqa.flame.layer import resolve_model_path

    try:
        d = describe_model(resolve_model_path(path))
    except (FileNotFoundError, FlameFileError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo(f"{d['model_id']}  ({d['path']})")
    typer.echo(f"  vertices {d['n_vertices']}, faces {d['n_faces']}, shape {d['n_shape']}, expression {d['n_expr']}, "
               f"pose correctives {d['n_pose_correctives']}{'' if d['pose_correctives_nonzero'] else ' (all zero)'}")
    for j in d["joints"]:
        typer.echo(f"  joint {j['index']} {j['name']:<10} parent {j['parent']:>2}  rest {j['rest_m']} m")
    mp = d["mediapipe_embedding"]
    mp_text = f"{mp['landmarks']} landmarks from {mp['source']}" if mp else "none"
    typer.echo(f"  MediaPipe embedding: {mp_text}")
    l68 = d["lmk68_embedding"]
    typer.echo(f"  68-point embedding: {l68['source'] if l68 else 'none'}")
    typer.echo(f"  license: {d['license']}")
    if d["note"]:
        typer.echo(f"  note: {d['note']}")


@model_app.command("demo")
def demo(
    out: Path = typer.Option(..., "--out", help="Where to write the demo head (.npz)."),
    bundle: Path = typer.Option(None, "--bundle", help="FaceLandmarker .task bundle (default: the model cache)."),
) -> None:
    """Generate the flameqa demo head (FLAME format, NOT FLAME) from MediaPipe's canonical face mesh."""
    from flameqa.flame.demo_head import write_demo_head

    try:
        p = write_demo_head(out, bundle)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(p))
