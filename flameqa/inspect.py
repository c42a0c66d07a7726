"""Summaries of an output folder: tables, shards, rows, statuses, failure reasons."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from flameqa.io import shards as sh


def summarize(out: str | os.PathLike) -> dict[str, Any]:
    """Return ``{table: {shards, rows, status: {..}, errors: {reason: count}}}`` over completed shards,
    plus incomplete shards (files without a marker: an interrupted or failed shard)."""
    out = Path(out)
    res: dict[str, Any] = {}
    for table in sh.list_table_dirs(out):
        done = sh.completed_shards(out, table)
        files = sorted(int(p.stem.split("-")[1]) for p in (out / table).glob("part-*.parquet"))
        info: dict[str, Any] = {"shards": len(done), "incomplete_shards": sorted(set(files) - set(done)), "rows": 0, "status": Counter(), "errors": Counter(), "rejected": Counter()}
        for i in done:
            m = sh.read_marker(out, table, i) or {}
            info["rows"] += int(m.get("rows", 0))
            info["status"].update(m.get("status_counts", {}))
            info["rejected"].update((m.get("extra") or {}).get("rejected", {}))
        try:
            cols = [c for c in ("status", "error") if c in sh.load_schema(table).names]
        except KeyError:
            cols = []
        if "error" in cols:
            t = sh.read_table(out, table, done, columns=cols)
            for st, err in zip(t.column("status").to_pylist(), t.column("error").to_pylist()):
                if err:
                    # group similar messages by their first clause (paths differ per row)
                    info["errors"][err.split(":")[0][:80]] += 1
        res[table] = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in info.items()}
    return res


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    for table, info in summary.items():
        st = ", ".join(f"{k}={v}" for k, v in sorted(info["status"].items()))
        lines.append(f"{table:16s} {info['rows']:7d} rows in {info['shards']} shards  [{st}]")
        if info["incomplete_shards"]:
            lines.append(f"{'':16s} incomplete shards (no marker; rerun to finish): {info['incomplete_shards']}")
        for reason, n in sorted(info["errors"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':16s} {n:5d} × {reason}")
        for reason, n in sorted(info["rejected"].items(), key=lambda kv: -kv[1]):
            lines.append(f"{'':16s} rejected {n:5d} × {reason}")
    return "\n".join(lines) if lines else "no tables"


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=1, sort_keys=True)
