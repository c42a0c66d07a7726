"""Fixtures for the FLAME layer tests: the demo head built once into a temp dir, and small random
FLAME-format models written the way the official files are (see ``_fixtures.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flameqa.flame.canonical_mesh import default_bundle_path


@pytest.fixture(scope="session")
def bundle_path() -> Path:
    p = default_bundle_path()
    if not p.is_file():
        pytest.skip(f"FaceLandmarker bundle not in the model cache ({p}); run `make setup`")
    return p


@pytest.fixture(scope="session")
def demo_npz(tmp_path_factory: pytest.TempPathFactory, bundle_path: Path) -> Path:
    from flameqa.flame.demo_head import write_demo_head

    return write_demo_head(tmp_path_factory.mktemp("demo") / "demo_head.npz", bundle_path)


@pytest.fixture(scope="session")
def demo64(demo_npz: Path):
    import torch

    from flameqa.flame import FlameLayer

    return FlameLayer.from_file(demo_npz, dtype=torch.float64)


@pytest.fixture(scope="session")
def demo32(demo_npz: Path):
    from flameqa.flame import FlameLayer

    return FlameLayer.from_file(demo_npz)
