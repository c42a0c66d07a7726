"""The stage contract shared by every executor.

A stage is a class with a typed config. Heavy models load once in ``__init__``; ``__call__`` maps a
batch of input rows (a ``pyarrow.Table`` whose rows are whole groups: all rows of one clip stay in
one batch) plus side tables (other tables' rows for the same clips) to output rows per table. It
gives the same rows however the input is split into batches, never imports ray and never decides
where it runs: executors (local, ray) own sharding, retries, markers and progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import pyarrow as pa


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about the run it is part of."""

    out: Path
    """The run's output root (``OUT``). Stages that write media files put them under ``OUT/media``."""
    device: str = "cpu"
    """torch device for stages that use one (``cpu``, ``cuda``, ``cuda:1``)."""
    extra: Mapping[str, Any] = field(default_factory=dict)


class Stage:
    """Base class: subclasses set the class attributes and implement ``__call__``."""

    name: ClassVar[str]
    input_table: ClassVar[str | None]
    """Table whose shards drive this stage (None: the ingest stage, driven by the manifest)."""
    output_tables: ClassVar[tuple[str, ...]]
    side_tables: ClassVar[tuple[str, ...]] = ()
    """Tables read alongside the input, same shard index, filtered to the batch's clip ids."""
    optional_side_tables: ClassVar[tuple[str, ...]] = ()
    """Side tables used when present (missing → an empty table is passed)."""
    group_key: ClassVar[str] = "clip_id"
    uses_gpu: ClassVar[bool] = False

    def __init__(self, config: Any, ctx: StageContext) -> None:
        self.config = config
        self.ctx = ctx

    @classmethod
    def check(cls, config: Any) -> None:
        """Fail now, before any stage of the run has worked, if this stage could not start with
        ``config`` (a model file that is missing, cannot be downloaded...). Cheap: resolves files,
        loads nothing. A model that must be downloaded is fetched here, by the run's process, so
        the workers of the local executor find it in the cache (not called for Ray: its workers
        may be other machines)."""

    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        raise NotImplementedError

    def on_error(self, batch: pa.Table, error: str) -> dict[str, pa.Table] | None:
        """Rows to write when processing ``batch`` raised (the executor calls it one group at a time).

        Return failed rows (status="failed", error=...) for each output table, or None to fail the
        shard (no marker written; the run continues with other shards and reports it).
        """
        return None

    def close(self) -> None:
        """Release models/handles (called once by the executor)."""


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """In a helper process: exit as soon as the process that started it is gone.

    A SIGKILLed run (OOM killer, a user's ``kill -9``, a preempted node) cannot shut its process
    pools down; their workers would otherwise wait on their task queue for ever, each holding its
    models in memory. A daemon thread compares the parent pid with ``parent``: the pid the parent
    passed along (``os.getpid()`` where it made the pool). The pid seen at start will not do: it is
    init's when the parent was killed while this process was still starting (seen in the soak
    test: a helper outlived its killed run and held its output pipe open).
    """
    import os
    import threading
    import time

    if os.getppid() != parent:
        os._exit(1)  # the parent died before this process got here

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
