"""Fixtures of the face-stage tests: the FaceLandmarker bundle, GRID clips, output folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GRID = DATA / "face_video" / "grid"
IMAGES = DATA / "face_images"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test media {path} is absent (../shared/data beside the project root)")
    return path


def grid_clips() -> list[Path]:
    clips = sorted(need(GRID).glob("*.mpg"))
    if not clips:
        pytest.skip(f"no GRID clips in {GRID}")
    return clips


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The face_landmarker.task bundle (skips when `make setup` has not filled the model cache)."""
    from flameqa.models import ModelNotFoundError
    from flameqa.vision.config import LandmarkerConfig
    from flameqa.vision.landmarker import resolve_bundle

    try:
        return resolve_bundle(LandmarkerConfig())
    except (ModelNotFoundError, FileNotFoundError) as e:
        pytest.skip(f"FaceLandmarker bundle not available: {e}")


@pytest.fixture(scope="session")
def landmarker(bundle):
    from flameqa.vision.landmarker import FaceLandmarker

    with FaceLandmarker() as lm:
        yield lm


@pytest.fixture(scope="session")
def grid_frames() -> dict[str, Any]:
    """Decoded GRID clips by name (frames ``[75, 288, 360, 3]`` + 16 kHz audio)."""
    from flameqa.vision.synth import load_clip

    return {p.stem: load_clip(p) for p in grid_clips()}


def clip_row(clip_id: str, path: Path, start_s: float = 0.0, end_s: float | None = None, **kw: Any) -> dict[str, Any]:
    """A ``clips`` row for ``path`` (probed: size, rotation, duration)."""
    from flameqa.io.media import probe

    p = probe(path)
    row = dict(
        clip_id=clip_id, video_id=clip_id.split(".")[0], path=str(path), audio_path=None, start_s=start_s,
        end_s=end_s if end_s is not None else p.duration_s, fps=25.0, width=p.width, height=p.height,
        rotation=p.rotation, status="ok", error=None,
    )
    row.update(kw)
    return row


def write_table(out: Path, table: str, shards: Sequence[Sequence[dict[str, Any]]]) -> None:
    """Write ``shards`` (lists of rows) of ``table`` under ``out`` as completed shards."""
    from flameqa.io import shards as sh

    for k, rows in enumerate(shards):
        sh.write_shard(out, table, k, list(rows))
        sh.write_marker(out, table, k, {"config_hash": f"test-{table}", "rows": len(rows)})


def faces_config(**overrides: Any):
    from flameqa.config import load_config

    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def rows_of(out: Path, table: str) -> list[dict[str, Any]]:
    from flameqa.io import shards as sh

    return sh.read_table(out, table).to_pylist()


def arrays(row: dict[str, Any], name: str, width: int) -> np.ndarray:
    return np.asarray(row[name], np.float32).reshape(-1, width)
