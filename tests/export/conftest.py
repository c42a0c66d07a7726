"""Fixtures: a run folder with assembled samples (from the test conversation), an exported
folder, and the local Hub server (``tests/hubserver.py``) started and stopped per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.assemble.conftest import Conversation, make_conversation  # noqa: F401 - shared builder
from tests.hubserver import HubServer

TOKEN = "hf_TESTTOKENdoNotLeak0123456789"
"""A planted fake Hub token: it must never appear in files written or in logs."""


@pytest.fixture(scope="session")
def assembled(tmp_path_factory) -> Conversation:
    """Upstream tables of the test conversation + the assemble stage run over them (read-only)."""
    from flameqa.config import load_config
    from flameqa.runner import run_pipeline

    conv = make_conversation(tmp_path_factory.mktemp("assembled"))
    rep = run_pipeline(load_config(), conv.out, stages=["assemble"], show_progress=False)
    assert rep.ok
    return conv


@pytest.fixture(scope="session")
def exported(assembled, tmp_path_factory) -> Path:
    """The default export (splits train=0.5,test=0.5 by identity) of ``assembled`` (read-only)."""
    from flameqa.export.config import ExportConfig
    from flameqa.export.hub_folder import export_dataset

    dest = tmp_path_factory.mktemp("exported") / "flameqa-test"
    export_dataset(assembled.out, dest, ExportConfig(splits={"train": 0.5, "test": 0.5}))
    return dest


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def export_copy(exported, tmp_path) -> Path:
    dst = tmp_path / exported.name
    shutil.copytree(exported, dst)
    return dst
