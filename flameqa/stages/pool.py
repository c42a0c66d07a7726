"""Inner processes: a stage spreads the items of one batch over its own process and spawned copies.

The local executor runs a shard in one process; one long video is one shard, so without this the
faces and fit stages of a single-video run would use one core however many the machine has.
:class:`InnerPool` gives a stage ``ctx.extra["processes"]`` processes (``runner.inner_processes``;
the runner sets 1 inside its own worker pools and Ray sets nothing, which means 1): the stage's
process (in a thread) and ``processes - 1`` helpers, each holding its own copy of the stage (built
once, models loaded once), take the items from the front as they come free. Results come back in
item order, so the output never depends on the number of processes.

Helpers exit when their parent dies (a SIGKILLed run leaves no orphan holding models in memory).
Counters a stage keeps in ``_stats`` (numbers, reset by its ``marker_extra``) are carried back as
differences and added to the parent's, so shard markers count every item once.
"""

from __future__ import annotations

import os
import sys
import tempfile
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from flameqa.stages.base import Stage, StageContext, exit_with_parent

#: Default size above which a helper's table travels as a memory-mapped Arrow file under
#: ``OUT/tmp``, not pickled through the pipe (which would hold it in both processes' memory at once).
SHIP_BYTES = 64 << 20


class InnerPool:
    """``processes`` processes (this one included) calling one method of ``stage`` on many items."""

    def __init__(self, stage: Stage, processes: int, ship_bytes: int = SHIP_BYTES) -> None:
        self.stage = stage
        self.processes = max(1, int(processes))
        self.ship_bytes = ship_bytes
        self._pool: Any = None

    @staticmethod
    def processes_of(ctx: StageContext) -> int:
        return max(1, int(ctx.extra.get("processes", 1)))

    def map(self, method: str, items: Sequence[Any]) -> list[Any]:
        """``[getattr(stage, method)(item) for item in items]``, spread over the processes.

        Every process takes the next item from the front as it comes free, this one included (it
        works in a thread, so that a helper that finishes meanwhile is handed its next item at
        once): items given longest first are spread the way that finishes soonest. An exception (a
        helper's included) propagates after the items in flight are cancelled and this process's
        own item has finished; a dead helper (``BrokenProcessPool``) also drops the pool, and the
        next call starts a new one.
        """
        fn = getattr(self.stage, method)
        if self.processes == 1 or len(items) < 2:
            return [fn(it) for it in items]
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        pool = self._helpers()
        todo = list(range(len(items)))
        out: dict[int, Any] = {}
        helpers: dict[Any, int] = {}
        own: tuple[Any, int] | None = None
        # helpers' counters are added once this process's own item is done: the stage's counters
        # are not locked against the thread that updates them
        later: list[dict[str, Any]] = []
        local = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inner")
        try:
            while todo or helpers or own:
                while todo and len(helpers) < self.processes - 1:
                    i = todo.pop(0)
                    helpers[pool.submit(_helper_call, method, items[i])] = i
                if todo and own is None:
                    i = todo.pop(0)
                    own = (local.submit(fn, items[i]), i)
                wait(list(helpers) + ([own[0]] if own else []), return_when=FIRST_COMPLETED)
                for f in [f for f in helpers if f.done()]:
                    result, stats = f.result()
                    out[helpers.pop(f)] = _unship(result)
                    later.append(stats)
                if own is not None and own[0].done():
                    out[own[1]] = own[0].result()
                    own = None
                if own is None:
                    for stats in later:
                        _add_stats(self.stage, stats)
                    later.clear()
        except BaseException:
            for f in helpers:
                f.cancel()
            if isinstance(sys.exc_info()[1], BrokenProcessPool):
                self.close()
            raise
        finally:
            local.shutdown(wait=True, cancel_futures=True)  # the stage's own item ends before it closes
        return [out[i] for i in range(len(items))]

    def _helpers(self):
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            st = self.stage
            # spawn: MediaPipe's, PyAV's and torch's threads do not survive fork
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes - 1, mp_context=mp.get_context("spawn"),
                initializer=_helper_init, initargs=(type(st), st.config, st.ctx, self.ship_bytes, os.getpid()),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def split_groups(batch: pa.Table, key: str, parts: int) -> list[pa.Table]:
    """``batch`` cut into at most ``parts`` contiguous pieces of whole ``key`` groups (rows of a group are
    contiguous in a batch), near-equal in number of groups."""
    if parts <= 1 or batch.num_rows == 0:
        return [batch]
    keys = batch.column(key).to_pylist()
    starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
    if len(starts) < 2:
        return [batch]
    n = min(parts, len(starts))
    cuts = sorted({starts[min(len(starts) - 1, round(k * len(starts) / n))] for k in range(n)} | {len(keys)})
    return [batch.slice(a, b - a) for a, b in zip(cuts, cuts[1:]) if b > a]


def _add_stats(stage: Stage, delta: dict[str, Any]) -> None:
    stats = getattr(stage, "_stats", None)
    if stats is None:
        return
    for k, v in delta.items():
        stats[k] = stats.get(k, 0) + v


# -- in a helper process --------------------------------------------------------------------------
_HELPER: dict[str, Any] = {}


def _helper_init(cls: type[Stage], config: Any, ctx: StageContext, ship_bytes: int, parent: int) -> None:
    from flameqa.logs import setup_logging

    exit_with_parent(parent)
    setup_logging(os.environ.get("FLAMEQA_LOG", "WARNING"))
    _HELPER["ship_bytes"] = ship_bytes
    _HELPER["stage"] = cls(config, replace(ctx, extra={**ctx.extra, "processes": 1}))


def _helper_call(method: str, item: Any) -> tuple[Any, dict[str, Any]]:
    """The method's result (large tables as files, see :data:`SHIP_BYTES`) and the counters it added."""
    stage = _HELPER["stage"]
    stats = getattr(stage, "_stats", None) or {}
    before = dict(stats)
    result = getattr(stage, method)(item)
    delta = {k: v - before.get(k, 0) for k, v in (getattr(stage, "_stats", None) or {}).items() if isinstance(v, (int, float))}
    return _ship(result, Path(stage.ctx.out) / "tmp", _HELPER["ship_bytes"]), delta


def _ship(x: Any, tmp: Path, limit: int) -> Any:
    if isinstance(x, dict):
        return {k: _ship(v, tmp, limit) for k, v in x.items()}
    if isinstance(x, pa.Table) and x.nbytes > limit:
        tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".inner-", suffix=".arrow", dir=tmp)
        os.close(fd)
        with pa.ipc.new_file(name, x.schema) as w:
            w.write_table(x)
        return _Shipped(name)
    return x


class _Shipped(str):
    """Path of a table a helper wrote (a ``str`` subclass, so it pickles as one)."""


def _unship(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _unship(v) for k, v in x.items()}
    if isinstance(x, _Shipped):
        try:
            return pa.ipc.open_file(pa.memory_map(str(x))).read_all()
        finally:
            Path(x).unlink(missing_ok=True)  # the mapping keeps the pages until the table is gone
    return x
