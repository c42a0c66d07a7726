"""Table schemas: ``schemas/v<N>/<table>.yaml`` is the single source of every table's columns.

Type grammar (strings in the YAML): ``string``, ``bool``, ``int32``, ``int64``, ``float32``,
``float64``, ``binary``, ``list<T>``, ``fixed_size_list<T,N>``, ``struct<name:T,...>``. Per-frame
vectors are ``list<fixed_size_list<float32,N>>`` so that ``datasets`` reads them as
``List(List(Value("float32"), length=N))`` and numpy gets ``(T, N)`` arrays.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pyarrow as pa
import yaml

SCHEMA_VERSION = 1

_SCALARS = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "binary": pa.binary(),
}


def _split_top(s: str) -> list[str]:
    """Split on commas that are not inside <...>."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def parse_type(s: str) -> pa.DataType:
    """Parse a schema type string into a pyarrow type (raises ValueError naming the bad string)."""
    s = s.strip()
    if s in _SCALARS:
        return _SCALARS[s]
    if s.endswith(">") and "<" in s:
        head, inner = s[: s.index("<")], s[s.index("<") + 1 : -1]
        if head == "list":
            return pa.list_(parse_type(inner))
        if head == "fixed_size_list":
            t, n = _split_top(inner)
            return pa.list_(parse_type(t), int(n))
        if head == "struct":
            fields = []
            for part in _split_top(inner):
                name, t = part.split(":", 1)
                fields.append(pa.field(name.strip(), parse_type(t)))
            return pa.struct(fields)
    raise ValueError(f"unknown schema type {s!r}; expected one of {sorted(_SCALARS)} or list<>/fixed_size_list<,N>/struct<>")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = False
    shape: tuple[int, ...] | None = None
    """Per-frame shape of a fixed-size vector column (e.g. (478, 3) for 1434 floats)."""
    hf: str | None = None
    """Hugging Face feature hint (``audio``)."""
    doc: str = ""


@dataclass(frozen=True)
class TableSchema:
    table: str
    version: int
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    doc: str = ""
    arrow: pa.Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = []
        for c in self.columns:
            meta = {"doc": c.doc}
            if c.shape:
                meta["shape"] = ",".join(map(str, c.shape))
            if c.hf:
                meta["hf"] = c.hf
            fields.append(pa.field(c.name, c.type, nullable=c.nullable, metadata=meta))
        schema = pa.schema(fields, metadata={"flameqa.table": self.table, "flameqa.schema_version": str(self.version)})
        object.__setattr__(self, "arrow", schema)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.table!r} has no column {name!r}; columns: {self.names}")


def list_tables(version: int = SCHEMA_VERSION) -> list[str]:
    root = resources.files("flameqa") / "schemas" / f"v{version}"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


@functools.lru_cache(maxsize=None)
def load_schema(table: str, version: int = SCHEMA_VERSION) -> TableSchema:
    """Load ``schemas/v{version}/{table}.yaml``."""
    path = resources.files("flameqa") / "schemas" / f"v{version}" / f"{table}.yaml"
    if not path.is_file():
        raise KeyError(f"no schema for table {table!r} (v{version}); known tables: {list_tables(version)}")
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    cols = tuple(
        Column(
            name=c["name"],
            type=parse_type(c["type"]),
            nullable=bool(c.get("nullable", False)),
            shape=tuple(c["shape"]) if c.get("shape") else None,
            hf=c.get("hf"),
            doc=c.get("doc", ""),
        )
        for c in raw["columns"]
    )
    return TableSchema(table=raw["table"], version=int(raw["version"]), key=tuple(raw.get("key", ())), columns=cols, doc=raw.get("doc", ""))


def empty_table(table: str) -> pa.Table:
    return load_schema(table).arrow.empty_table()


def conform(table: str, data: pa.Table | dict[str, Any] | list[dict[str, Any]]) -> pa.Table:
    """Build/cast rows to the table's schema: column order, types and field metadata.

    ``data`` may be a pyarrow Table, a dict of columns (lists or numpy arrays) or a list of row
    dicts. Missing nullable columns are filled with nulls; a missing required column or an extra
    column raises ValueError naming the table and column.
    """
    schema = load_schema(table)
    if isinstance(data, list):
        extra = {k for row in data for k in row} - set(schema.names)
        data = {name: [row.get(name) for row in data] for name in schema.names} if data else {n: [] for n in schema.names}
    elif isinstance(data, pa.Table):
        extra = set(data.column_names) - set(schema.names)
        data = {n: data.column(n) for n in data.column_names if n in schema.names}
    else:
        extra = set(data) - set(schema.names)
    if extra:
        raise ValueError(f"table {table!r}: unexpected columns {sorted(extra)} (schema v{schema.version} has {schema.names})")
    n = None
    for v in data.values():
        n = len(v)
        break
    arrays = []
    for c in schema.columns:
        if c.name in data:
            arrays.append(to_arrow(data[c.name], c.type, where=f"{table}.{c.name}"))
        elif c.nullable:
            arrays.append(pa.nulls(n or 0, type=c.type))
        else:
            raise ValueError(f"table {table!r}: missing required column {c.name!r}")
    return pa.Table.from_arrays(arrays, schema=schema.arrow)


def to_arrow(values: Any, typ: pa.DataType, where: str = "") -> pa.Array | pa.ChunkedArray:
    """Convert a column (list, numpy array, list of 2-D arrays, or pyarrow array) to ``typ``.

    A list of ``(T, N)`` numpy arrays becomes ``list<fixed_size_list<float32,N>>`` without Python
    loops over frames (flat buffer + offsets).
    """
    import numpy as np

    if isinstance(values, pa.ChunkedArray):
        # cast chunk by chunk: combining would copy a whole (possibly memory-mapped) column into RAM
        if values.type == typ:
            return values
        return pa.chunked_array([c.cast(typ) for c in values.chunks], type=typ)
    if isinstance(values, pa.Array):
        return values if values.type == typ else values.cast(typ)
    try:
        if pa.types.is_list(typ) and pa.types.is_fixed_size_list(typ.value_type):
            inner = typ.value_type
            width = inner.list_size
            if all(v is None or isinstance(v, np.ndarray) for v in values) and len(values) > 0:
                offsets, flats, mask = [0], [], []
                for v in values:
                    if v is None:
                        offsets.append(offsets[-1])
                        mask.append(True)
                        continue
                    a = np.asarray(v, dtype=inner.value_type.to_pandas_dtype())
                    # zero frames: reshape(0, -1) is ambiguous, and there is nothing to check
                    a = a.reshape(0, width) if a.size == 0 else a.reshape(len(v), -1)
                    if a.shape[1] != width:
                        raise ValueError(f"{where}: expected per-frame width {width}, got array of shape {np.shape(v)}")
                    flats.append(a.reshape(-1))
                    offsets.append(offsets[-1] + a.shape[0])
                    mask.append(False)
                flat = np.concatenate(flats) if flats else np.zeros(0, inner.value_type.to_pandas_dtype())
                fsl = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=inner.value_type), width)
                return pa.ListArray.from_arrays(
                    pa.array(offsets, type=pa.int32()), fsl, mask=pa.array(mask) if any(mask) else None
                )
        if pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ):
            values = [None if v is None else (v.tolist() if isinstance(v, np.ndarray) else v) for v in values]
        elif isinstance(values, np.ndarray):
            return pa.array(values, type=typ)
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
        raise ValueError(f"{where}: cannot convert to {typ}: {e}") from e


def column_to_numpy(col: pa.Array | pa.ChunkedArray, row: int | None = None):
    """Return a fixed-size-list-of-list column as numpy: one row → ``(T, N)``; all rows → list."""
    import numpy as np

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()

    def one(i: int):
        v = col[i]
        if not v.is_valid:
            return None
        vals = v.values
        if pa.types.is_fixed_size_list(vals.type):
            w = vals.type.list_size
            return vals.flatten().to_numpy(zero_copy_only=False).reshape(-1, w)
        return vals.to_numpy(zero_copy_only=False)

    if row is not None:
        return one(row)
    return [one(i) for i in range(len(col))]
