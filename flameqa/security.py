"""Small security helpers: id sanitizing, path containment, secret redaction."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SECRET_KEYS = re.compile(r"(token|secret|password|api_key|apikey|authorization)", re.I)
_SECRET_VALUES = re.compile(r"(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{8,}|Bearer\s+[A-Za-z0-9._-]{8,})")


def is_safe_id(s: str) -> bool:
    """True when ``s`` can name a file under OUT: [A-Za-z0-9._-], no leading dot, no '..'."""
    return bool(_ID_OK.match(s)) and ".." not in s


def sanitize_id(s: str) -> str:
    """Map any string to a safe id (used to derive ids from file names)."""
    t = re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._-")
    t = re.sub(r"\.{2,}", ".", t)
    return (t or "item")[:128]


def contained(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Return ``path`` resolved, raising ValueError when it escapes ``root``."""
    r = Path(root).resolve()
    p = (r / path).resolve()
    if p != r and r not in p.parents:
        raise ValueError(f"path {path!s} escapes the output folder {r}")
    return p


def redact_text(s: str) -> str:
    return _SECRET_VALUES.sub("***", s)


def redact_obj(obj: Any) -> Any:
    """Copy of a JSON-like object with secret-looking keys' values and token-like strings masked."""
    if isinstance(obj, dict):
        # keys naming an environment variable (``*_env``) hold a name, not a secret
        return {
            k: ("***" if _SECRET_KEYS.search(str(k)) and not str(k).endswith("_env") and v else redact_obj(v)) for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


class RedactingFilter(logging.Filter):
    """Logging filter that masks token-like strings in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = redact_text(msg)
        if red != msg:
            record.msg, record.args = red, ()
        if record.exc_info and not record.exc_text:
            # a traceback quotes exception messages (URLs, headers): format it here, redacted; handlers
            # print ``exc_text`` when it is set
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
