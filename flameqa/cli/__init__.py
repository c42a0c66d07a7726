"""Command line: `flameqa ...`. Each command is a few lines over one library function.

Commands live in per-domain modules that register on the apps in ``flameqa.cli.app``; modules
import heavy libraries only inside command bodies, so ``flameqa --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging

from flameqa.cli.app import app

_MODULES = ["core", "flame", "speech", "vision", "fit", "samples", "visual", "train", "bench"]


def _register() -> None:
    for m in _MODULES:
        try:
            importlib.import_module(f"flameqa.cli.{m}")
        except ModuleNotFoundError as e:
            if e.name != f"flameqa.cli.{m}":
                raise


def main() -> None:
    from flameqa.logs import setup_logging

    setup_logging()
    _register()
    app()


_register()
