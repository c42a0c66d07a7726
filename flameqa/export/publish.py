"""Publish an exported dataset folder to the Hugging Face Hub with ``huggingface_hub``.

The token is whatever ``huggingface_hub`` finds (``HF_TOKEN``, ``hf auth login``): flameqa never
takes it on the command line, never logs it and refuses to upload a text file that contains it.
Data files go up in commits of at most ``commit_bytes``; the card goes last in a commit that also
deletes remote ``data/`` files the folder no longer has (a re-export with fewer shards leaves no
stale file behind). A rerun skips files the repo already holds unchanged, and LFS objects already
on the server are not sent again, so an interrupted upload resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from flameqa.export.config import PublishConfig
from flameqa.export.hub_folder import STAGING

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".md", ".json", ".jsonl", ".yaml", ".yml", ".txt", ".csv", ".tsv", ".gitattributes", ".cfg", ".toml")
_SCAN_LIMIT = 64 * 1024 * 1024


class PublishError(RuntimeError):
    """A folder that must not or cannot be published; the message says why and what to do."""


@dataclass
class PublishReport:
    repo_id: str
    repo_url: str
    commits: list[str] = field(default_factory=list)
    """Commit ids, in order (a rerun with nothing new adds the current head once)."""
    files: int = 0
    """Files in the folder considered for upload."""


def _files(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(p)
    return out


def check_no_secret(folder: Path, secret: str | None) -> None:
    """Raise PublishError when a text file of ``folder`` contains ``secret`` (the Hub token)."""
    if not secret:
        return
    needle = secret.encode()
    for p in _files(folder):
        if p.suffix.lower() in TEXT_SUFFIXES or p.name in ("README", ".gitattributes"):
            if p.stat().st_size <= _SCAN_LIMIT and needle in p.read_bytes():
                raise PublishError(f"{p} contains your Hugging Face token: remove it before publishing (nothing was uploaded)")


def commit_batches(folder: Path, max_bytes: int) -> list[list[str]]:
    """Data files (``data/**``, relative posix paths) grouped in order into batches of ≤ ``max_bytes``
    (a file larger than that is a batch of its own)."""
    batches: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for p in _files(folder / "data") if (folder / "data").is_dir() else []:
        n = p.stat().st_size
        if cur and size + n > max_bytes:
            batches.append(cur)
            cur, size = [], 0
        cur.append(p.relative_to(folder).as_posix())
        size += n
    if cur:
        batches.append(cur)
    return batches


def publish_folder(folder: str | os.PathLike, repo_id: str, config: PublishConfig | None = None) -> PublishReport:
    """Create (if needed) the dataset repo ``repo_id`` and upload ``folder`` to it.

    ``folder`` must be an export (``README.md`` + ``data/``). Raises PublishError for a folder that
    is not one or that holds the token; huggingface_hub's errors (auth, network) propagate.
    """
    from huggingface_hub import HfApi

    cfg = config or PublishConfig()
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "data").is_dir():
        raise PublishError(f"{folder} is not an exported dataset (README.md and data/ expected): run `flameqa export OUT --dest {folder}` first")
    api = HfApi(endpoint=cfg.endpoint)
    from huggingface_hub import get_token

    check_no_secret(folder, get_token())
    url = api.create_repo(repo_id, repo_type=cfg.repo_type, private=cfg.private, exist_ok=True)
    rep = PublishReport(repo_id=repo_id, repo_url=str(url), files=len(_files(folder)))
    batches = commit_batches(folder, cfg.commit_bytes)
    for i, batch in enumerate(batches):
        log.info("uploading data batch %d/%d (%d files) to %s", i + 1, len(batches), len(batch), repo_id)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type=cfg.repo_type,
            folder_path=folder,
            allow_patterns=batch,
            revision=cfg.revision,
            commit_message=f"{cfg.commit_message} (data {i + 1}/{len(batches)})",
        )
        rep.commits.append(info.oid)
    log.info("uploading the card and removing stale data files in %s", repo_id)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type=cfg.repo_type,
        folder_path=folder,
        revision=cfg.revision,
        ignore_patterns=[STAGING, f"{STAGING}/*"],
        delete_patterns=["data/**"],
        commit_message=f"{cfg.commit_message} (card)",
    )
    rep.commits.append(info.oid)
    log.info("published %s (%d files)", rep.repo_url, rep.files)
    return rep
