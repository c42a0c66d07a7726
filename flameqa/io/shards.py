"""Parquet shards and completion markers.

Layout: ``OUT/<table>/part-NNNNN.parquet`` and ``OUT/<table>/_done/NNNNN.json``. A shard is written
to a hidden temp name in the same folder and renamed into place (atomic on POSIX); its marker is
written the same way and only after every output table of the shard exists. Readers only see
shards that have a marker, so a run killed at any point leaves nothing half-visible.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

# atomic_write_bytes moved to flameqa.io.atomic; config, report and assemble still import it from here
from flameqa.io.atomic import atomic_write_bytes, create_temp
from flameqa.io.schema import conform, empty_table, load_schema

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 256 * 1024 * 1024

KILL_ENV = "FLAMEQA_TEST_KILL_AT"
"""Test hook (tests/reliability): ``<name>:<point>[:<shard>]`` makes the process SIGKILL itself there."""


def fault_point(point: str, name: str, idx: int) -> None:
    """SIGKILL this process when ``$FLAMEQA_TEST_KILL_AT`` names this place (crash tests only).

    ``name`` is a stage for the runner's points (``start``: markers cleared, nothing written;
    ``write``: the first output table's shard renamed into place; ``marker``: every shard written, no
    marker yet; ``marker1``: the first marker written; ``done``: every marker written) or a table for
    ``rename`` (the temp file is complete and fsynced, the rename has not happened). Unset, as it is
    outside the tests, this is one environment lookup per call.
    """
    spec = os.environ.get(KILL_ENV)
    if spec and spec in (f"{name}:{point}", f"{name}:{point}:{idx}"):
        os.kill(os.getpid(), signal.SIGKILL)


def shard_name(idx: int) -> str:
    return f"part-{idx:05d}.parquet"


def shard_path(out: str | os.PathLike, table: str, idx: int) -> Path:
    return Path(out) / table / shard_name(idx)


def marker_path(out: str | os.PathLike, table: str, idx: int) -> Path:
    return Path(out) / table / "_done" / f"{idx:05d}.json"


class DiskSpaceError(OSError):
    """Too little free space to write outputs safely (raised before writing, never mid-file)."""


def check_free_space(path: str | os.PathLike, need_bytes: int = MIN_FREE_BYTES) -> None:
    """Raise :class:`DiskSpaceError` with a clear message when the file system of ``path`` is nearly full."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    free = shutil.disk_usage(p).free
    if free < need_bytes:
        raise DiskSpaceError(
            f"only {free / 2**20:.0f} MiB free on the file system of {path} (need ≥ {need_bytes / 2**20:.0f} MiB): "
            "free space or point --out elsewhere"
        )


class ShardWriter:
    """One shard of ``table`` written batch by batch to a hidden temp file, renamed into place by
    :meth:`commit` (memory: one batch). Until then readers see the previous file, if any."""

    def __init__(self, out: str | os.PathLike, table: str, idx: int) -> None:
        self.table, self.idx = table, idx
        self.path = shard_path(out, table, idx)
        self.schema = load_schema(table).arrow
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: str | None = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(self.path.parent, MIN_FREE_BYTES // 4)
        # not mkstemp: its 0600 would survive the rename and make the shard owner-only
        fd, self._tmp = create_temp(self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)  # ParquetWriter reopens the path; truncating an existing file keeps its mode
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")

    def write(self, data: pa.Table | dict[str, Any] | list[dict[str, Any]]) -> pa.Table:
        """Conform ``data`` to the table schema and append it; returns the conformed table."""
        tbl = conform(self.table, data)
        if self._writer is None:
            self._open()
        if tbl.num_rows:
            check_free_space(self.path.parent, max(MIN_FREE_BYTES // 4, 2 * tbl.nbytes))
            self._writer.write_table(tbl, row_group_size=256)
            self.rows += tbl.num_rows
        return tbl

    def commit(self) -> Path:
        """Close, fsync and rename into place (an empty shard still gets its file)."""
        if self._writer is None:
            self._open()
        self._writer.close()
        self._writer = None
        with open(self._tmp, "rb") as f:
            os.fsync(f.fileno())
        fault_point("rename", self.table, self.idx)
        os.replace(self._tmp, self.path)
        self._tmp = None
        return self.path

    def abort(self) -> None:
        """Drop the temp file (the previous shard file, if any, stays)."""
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:  # noqa: BLE001 - the file is removed anyway
            pass
        self._writer = None
        if self._tmp:
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None


def write_shard(out: str | os.PathLike, table: str, idx: int, data: pa.Table) -> Path:
    """Conform ``data`` to the table schema and write it atomically as shard ``idx``."""
    w = ShardWriter(out, table, idx)
    try:
        w.write(data)
        return w.commit()
    except BaseException:
        w.abort()
        raise


def write_marker(out: str | os.PathLike, table: str, idx: int, info: dict[str, Any]) -> Path:
    path = marker_path(out, table, idx)
    atomic_write_bytes(path, json.dumps(info, indent=1, sort_keys=True, default=str).encode())
    return path


def read_marker(out: str | os.PathLike, table: str, idx: int) -> dict[str, Any] | None:
    path = marker_path(out, table, idx)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        log.warning("ignoring unreadable marker %s (it will be redone)", path)
        return None


def completed_shards(out: str | os.PathLike, table: str) -> list[int]:
    """Indices of shards of ``table`` that have a marker and a shard file."""
    done = Path(out) / table / "_done"
    if not done.is_dir():
        return []
    idx = []
    for p in done.glob("[0-9]*.json"):
        if p.stem.isdigit() and shard_path(out, table, int(p.stem)).exists():
            idx.append(int(p.stem))
    return sorted(idx)


def clear_shard(out: str | os.PathLike, table: str, idx: int) -> None:
    """Remove a shard's marker first, then its file (so no marker ever points at a stale file)."""
    marker_path(out, table, idx).unlink(missing_ok=True)
    shard_path(out, table, idx).unlink(missing_ok=True)


def remove_stale_temps(out: str | os.PathLike, table: str, idx: int) -> int:
    """Delete temp files a killed writer left for shard ``idx`` of ``table``; returns how many.

    Only the executor working on this shard calls it (one writer per shard), so no live temp file of
    another writer can match.
    """
    folder = Path(out) / table
    n = 0
    for pattern, where in ((f".{shard_name(idx)}.*.tmp", folder), (f".{idx:05d}.json.*.tmp", folder / "_done")):
        for p in where.glob(pattern):
            p.unlink(missing_ok=True)
            n += 1
    return n


class ShardReader:
    """A shard read a few groups at a time: the key column up front, rows on demand by row group.

    Rows come back in file order, conformed to the table schema. The row groups of the last read
    are kept, so consecutive batches inside one large row group are not decoded twice.
    """

    def __init__(self, out: str | os.PathLike, table: str, idx: int) -> None:
        self.table = table
        self.path = shard_path(out, table, idx)
        self.schema = load_schema(table).arrow
        self._pf = pq.ParquetFile(self.path)
        md = self._pf.metadata
        self.num_rows = md.num_rows
        self._starts = [0]
        for i in range(md.num_row_groups):
            self._starts.append(self._starts[-1] + md.row_group(i).num_rows)
        self.column_names = list(self._pf.schema_arrow.names)
        self._keys: dict[str, list] = {}
        self._cache: tuple[tuple[int, ...], pa.Table] | None = None

    def keys(self, column: str) -> list:
        if column not in self._keys:
            self._keys[column] = self._pf.read(columns=[column]).column(column).to_pylist()
        return self._keys[column]

    def take(self, rows: list[int]) -> pa.Table:
        """Rows ``rows`` (indices into the shard, any order) as one table."""
        import bisect

        if not rows:
            return empty_table(self.table)
        rgs = tuple(sorted({bisect.bisect_right(self._starts, r) - 1 for r in rows}))
        if self._cache is None or not set(rgs) <= set(self._cache[0]):
            t = self._pf.read_row_groups(list(rgs))
            if not t.schema.equals(self.schema, check_metadata=False):
                t = t.cast(self.schema)
            self._cache = (rgs, t)
        cached, t = self._cache
        base, off = {}, 0
        for g in cached:
            base[g] = off
            off += self._starts[g + 1] - self._starts[g]
        local = [base[g] + r - self._starts[g] for r in rows for g in [bisect.bisect_right(self._starts, r) - 1]]
        return t.take(pa.array(local, pa.int64()))

    def select(self, column: str, values: list) -> pa.Table:
        """Rows whose ``column`` is in ``values``, in file order."""
        want = set(values)
        return self.take([i for i, k in enumerate(self.keys(column)) if k in want])

    def read_all(self) -> pa.Table:
        return self.take(list(range(self.num_rows)))


def read_shard(out: str | os.PathLike, table: str, idx: int) -> pa.Table:
    return pq.read_table(shard_path(out, table, idx), schema=load_schema(table).arrow)


def read_table(out: str | os.PathLike, table: str, shards: Iterable[int] | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read the completed shards of ``table`` (all, or the given indices) as one Arrow table.

    Shards without a marker are invisible. Returns an empty table with the schema when none exist.
    """
    idx = completed_shards(out, table) if shards is None else list(shards)
    parts = []
    for i in idx:
        parts.append(pq.read_table(shard_path(out, table, i), columns=columns, schema=load_schema(table).arrow))
    if not parts:
        t = empty_table(table)
        return t.select(columns) if columns else t
    return pa.concat_tables(parts)


def list_table_dirs(out: str | os.PathLike) -> list[str]:
    root = Path(out)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "_done").is_dir())
