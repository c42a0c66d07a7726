"""Configs of the Hub export (``flameqa export``) and of publishing (``flameqa publish``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from flameqa.configbase import Config

_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


class ExportConfig(Config):
    """A dataset folder laid out as a Hub dataset repo: ``README.md`` + ``data/<split>-NNNNN-of-NNNNN.parquet``."""

    splits: dict[str, float] = {"train": 0.9, "test": 0.1}
    """Split name → fraction of identities' hash space (normalised to sum to 1)."""
    by: Literal["identity", "video", "clip"] = "identity"
    """Grouping that never straddles two splits: the samples' ``identity`` column (see
    ``assemble.identity``), ``video_id`` or ``clip_id``."""
    seed: int = 0
    """Salt of the split hash: another seed gives another (deterministic) assignment."""
    shard_bytes: int = 256 * 1024 * 1024
    """A parquet file is closed once the (uncompressed Arrow) bytes written to it reach this."""
    row_group_bytes: int = 32 * 1024 * 1024
    """Target uncompressed bytes per parquet row group (streaming readers fetch one at a time)."""
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    config_name: str = "default"
    """Name of the dataset config in the card's ``configs`` list."""
    pretty_name: str | None = None
    """Card title (default: ``FLAME-QA (<folder name>)``)."""
    license: str | None = None
    """Hub license id for the card, overriding the roll-up of the inputs' licenses."""
    citation: str | None = None
    """Extra BibTeX appended to the card's citation block (e.g. your own paper)."""

    @field_validator("splits")
    @classmethod
    def _check_splits(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one split is needed, e.g. {train: 1.0}")
        for name, frac in v.items():
            if not _SPLIT_NAME.match(name):
                raise ValueError(f"split name {name!r} must match {_SPLIT_NAME.pattern} (letters, digits, _)")
            if not frac >= 0:
                raise ValueError(f"split {name!r}: fraction must be >= 0, got {frac}")
        if sum(v.values()) <= 0:
            raise ValueError("split fractions must not all be 0")
        return v


class PublishConfig(Config):
    """Upload of an exported folder with ``huggingface_hub`` (token from ``HF_TOKEN`` or ``hf auth login``)."""

    repo_type: Literal["dataset"] = "dataset"
    private: bool = False
    """Create the repo private (only used when the repo does not exist yet)."""
    revision: str | None = None
    """Branch to commit to (default: the repo's main branch)."""
    endpoint: str | None = None
    """Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co)."""
    commit_bytes: int = 20 * 1024**3
    """Data files are committed in batches of at most this many bytes; a rerun skips files the repo
    already has, so an interrupted upload resumes where it stopped."""
    commit_message: str = "Upload FLAME-QA dataset with flameqa"
