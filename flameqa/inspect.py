"""Summaries of an output folder: tables, shards, rows, statuses, failure reasons."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from flameqa.io import shards as sh


_PATH = re.compile(r"(?<![\w.])/[^:'\"]*?(?=: |['\"]|$)")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def reason(error: str) -> str:
    """Group key of an error message: its first clause with paths and numbers masked (they differ per row)."""
    head = _PATH.sub("<path>", error.strip().splitlines()[0] if error.strip() else error)
    head = _NUMBER.sub("N", head)
    return head.split(": ")[0][:80]


def summarize(out: str | os.PathLike) -> dict[str, Any]:
    """Return ``{table: {shards, rows, status: {..}, errors: {reason: count}}}`` over completed shards,
    plus incomplete shards (files without a marker: an interrupted or failed shard) and, for tables
    with a ``flags`` column, how many rows carry each flag (``vfr``, ``rotated_90``, ``no_audio`` ...)."""
    out = Path(out)
    res: dict[str, Any] = {}
    for table in sh.list_table_dirs(out):
        done = sh.completed_shards(out, table)
        files = sorted(int(p.stem.split("-")[1]) for p in (out / table).glob("part-*.parquet"))
        info: dict[str, Any] = {"shards": len(done), "incomplete_shards": sorted(set(files) - set(done)), "rows": 0, "status": Counter(), "errors": Counter(), "flags": Counter(), "rejected": Counter()}
        for i in done:
            m = sh.read_marker(out, table, i) or {}
            info["rows"] += int(m.get("rows", 0))
            info["status"].update(m.get("status_counts", {}))
            info["rejected"].update((m.get("extra") or {}).get("rejected", {}))
        try:
            cols = [c for c in ("status", "error", "flags") if c in sh.load_schema(table).names]
        except KeyError:
            cols = []
        if "error" in cols:
            t = sh.read_table(out, table, done, columns=[c for c in cols if c != "flags"])
            for err in t.column("error").to_pylist():
                if err:
                    info["errors"][reason(err)] += 1
        if "flags" in cols:
            for flags in sh.read_table(out, table, done, columns=["flags"]).column("flags").to_pylist():
                info["flags"].update(set(flags or []))
        res[table] = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in info.items()}
    return res


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    for table, info in summary.items():
        st = ", ".join(f"{k}={v}" for k, v in sorted(info["status"].items()))
        lines.append(f"{table:16s} {info['rows']:7d} rows in {info['shards']} shards  [{st}]")
        if info["incomplete_shards"]:
            lines.append(f"{'':16s} incomplete shards (no marker; rerun to finish): {info['incomplete_shards']}")
        for why, n in sorted(info["errors"].items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{'':16s} {n:5d} × {why}")
        if info.get("flags"):
            lines.append(f"{'':16s} flags: " + ", ".join(f"{k}={v}" for k, v in sorted(info["flags"].items())))
        for why, n in sorted(info["rejected"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':16s} rejected {n:5d} × {why}")
    return "\n".join(lines) if lines else "no tables"


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=1, sort_keys=True)
