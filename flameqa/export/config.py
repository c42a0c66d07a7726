from __future__ import annotations

from flameqa.configbase import Config


class ExportConfig(Config):
    splits: dict[str, float] = {"train": 0.9, "test": 0.1}
    shard_bytes: int = 256 * 1024 * 1024
    seed: int = 0
