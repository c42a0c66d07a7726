"""Input manifests: CSV/TSV/JSONL/Parquet with a ``uri`` column, a folder, a glob, or one video file.

Ids are assigned here, over the whole manifest, so they are unique across shards: a given
``video_id`` must be a safe id (else the row fails with a reason); a missing one is derived from the
file name, with a short hash of the uri appended on collision. Repeated uris are marked duplicates.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from flameqa.security import is_safe_id, sanitize_id

log = logging.getLogger(__name__)

VIDEO_EXTS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".m4v", ".flv", ".ts", ".wmv"}
KNOWN_COLUMNS = {"uri", "video_id", "license", "source"}
MANIFEST_COLUMNS = ["row", "uri", "video_id", "license", "source", "error", "duplicate_of"]


class ManifestError(ValueError):
    """The manifest as a whole cannot be read (not a single bad row: those become failed rows)."""


def _rows_from_file(path: Path) -> list[dict[str, Any]]:
    try:
        return _parse_file(path)
    except (UnicodeDecodeError, csv.Error, pa.ArrowException, OSError) as e:
        raise ManifestError(f"manifest {path} cannot be read: {type(e).__name__}: {e}") from None


def _parse_file(path: Path) -> list[dict[str, Any]]:
    suf = path.suffix.lower()
    if suf in (".csv", ".tsv"):
        rows = []
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if suf == ".tsv" else ",", restkey="__rest")
            for r in reader:
                rest = r.pop("__rest", None)
                if rest is not None:
                    # e.g. an unquoted comma inside a uri: the fields cannot be trusted
                    n = len(reader.fieldnames or [])
                    r["__error"] = (
                        f"manifest {path.name} line {reader.line_num} has {n + len(rest)} fields, its header {n} "
                        "(quote values that contain the delimiter)"
                    )
                rows.append(r)
        return rows
    if suf in (".jsonl", ".ndjson"):
        rows = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    rows.append({"__error": f"manifest {path.name} line {i + 1} is not JSON: {e.msg}"})
                    continue
                rows.append(r if isinstance(r, dict) else {"__error": f"manifest {path.name} line {i + 1} is not an object"})
        return rows
    if suf == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise ManifestError(f"{path}: unknown manifest type {suf!r}; use .csv, .tsv, .jsonl or .parquet, a folder, or a glob")


def _expand(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    rows: list[dict[str, Any]] = []
    for item in items:
        s = str(item)
        p = Path(s)
        url = "://" in s  # neither a pattern (its "?") nor a local path to check
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_EXTS)
            if not files:
                log.warning("folder %s holds no video files (%s)", p, ", ".join(sorted(VIDEO_EXTS)))
            rows += [{"uri": str(q)} for q in files]
        elif not url and any(ch in s for ch in "*?[") and not p.exists():
            found = [{"uri": q} for q in sorted(glob.glob(s, recursive=True)) if Path(q).is_file()]
            if not found:
                log.warning("pattern %s matches no files", s)
            rows += found
        elif p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet"):
            if not p.exists():
                raise ManifestError(f"manifest {p} does not exist")
            base = p.parent
            for r in _rows_from_file(p):
                u = r.get("uri")
                # relative uris in a manifest are relative to the manifest's folder
                if isinstance(u, str) and u and "://" not in u and not os.path.isabs(u):
                    r["uri"] = str(base / u)
                rows.append(r)
        elif not url and not p.exists():
            # a path typed on the command line, not a row of a manifest: a typo should stop the run
            # here, not become one failed row after every stage has run
            raise ManifestError(f"input {s} does not exist (give a video, a folder, a glob or a manifest)")
        else:
            rows.append({"uri": s})
    return rows


def read_manifest(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read inputs into manifest rows with unique ids; bad rows carry an ``error``."""
    raw = _expand(inputs)
    extra = sorted({str(k) for r in raw for k in r if k not in KNOWN_COLUMNS and not str(k).startswith("__")})
    if extra:
        log.warning("manifest columns %s are not used (known: %s)", extra, sorted(KNOWN_COLUMNS))
    out: list[dict[str, Any]] = []
    ids: set[str] = set()
    seen_uri: dict[str, str] = {}
    for i, r in enumerate(raw):
        uri = r.get("uri")
        row = {
            "row": i,
            "uri": "" if uri is None else str(uri),
            "video_id": None,
            "license": None if r.get("license") in (None, "") else str(r.get("license")),
            "source": None if r.get("source") in (None, "") else str(r.get("source")),
            "error": r.get("__error"),
            "duplicate_of": None,
        }
        given = r.get("video_id")
        given = None if given in (None, "") else str(given)
        if not row["uri"].strip() and not row["error"]:
            row["error"] = f"manifest row {i} has no 'uri'"
        if "\x00" in row["uri"] and not row["error"]:
            row["error"] = f"manifest row {i}: the uri contains a NUL byte"
        if given is not None and not is_safe_id(given):
            vid = sanitize_id(given)
            row["error"] = row["error"] or (
                f"invalid video_id {given!r}: ids may use only letters, digits, '.', '_' and '-', "
                "must not start with '.' or contain '..' (they name files under OUT)"
            )
        else:
            vid = given or sanitize_id(Path(row["uri"].split("://")[-1]).stem if row["uri"] else f"row{i}")
        if vid in ids:
            if given is not None and not row["error"]:
                row["error"] = f"duplicate video_id {given!r} (already used by an earlier manifest row)"
            suffix = hashlib.sha1(f"{row['uri']}#{i}".encode()).hexdigest()[:8]
            vid = f"{vid[:119]}-{suffix}"  # still ≤ 128 characters: a safe id
        ids.add(vid)
        row["video_id"] = vid
        u = row["uri"][7:] if row["uri"].startswith("file://") else row["uri"]
        if u and not row["error"]:
            key = os.path.realpath(u) if "://" not in u else u
            if key in seen_uri:
                row["duplicate_of"] = seen_uri[key]
            else:
                seen_uri[key] = vid
        out.append(row)
    return out


def manifest_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([("row", pa.int64())] + [(c, pa.string()) for c in MANIFEST_COLUMNS[1:]])
    return pa.Table.from_pylist([{c: r.get(c) for c in MANIFEST_COLUMNS} for r in rows], schema=schema)
