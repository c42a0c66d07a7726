"""Logging set-up for the CLI: rich handler, secrets redacted in every record."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    from flameqa.security import RedactingFilter

    lvl = (level or os.environ.get("FLAMEQA_LOG", "INFO")).upper()
    # logs go to stderr so that `--json` output on stdout stays machine-readable
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=lvl, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("faster_whisper", "numba", "matplotlib", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
