"""Package-level promises: light imports, the CLI entry points, files the project must carry."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("torch", "mediapipe", "ray", "av", "faster_whisper", "datasets", "cv2", "resemblyzer")


def test_import_is_light():
    code = "import sys, flameqa, flameqa.config, flameqa.cli; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"importing flameqa pulled in: {r.stdout.strip()}"


def test_cli_help_lists_commands():
    r = subprocess.run([sys.executable, "-m", "flameqa", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("run", "ingest", "inspect"):
        assert cmd in r.stdout


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "GRID" in (ROOT / "NOTICE").read_text()
