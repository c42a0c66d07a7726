"""`import flameqa` and the sample modules stay light: no torch, datasets or huggingface_hub."""

from __future__ import annotations

import subprocess
import sys


def test_sample_modules_import_light():
    code = (
        "import sys, flameqa, flameqa.assemble.stage, flameqa.export.hub_folder, flameqa.export.publish;"
        "print(sorted(m for m in ('torch', 'datasets', 'huggingface_hub', 'av') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
