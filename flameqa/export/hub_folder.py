"""Export ``OUT/samples`` to a folder laid out as a Hugging Face dataset repo.

Layout::

    DEST/README.md                                   dataset card: YAML configs + dataset_info, docs
    DEST/data/<split>-NNNNN-of-NNNNN.parquet         files closed at ``export.shard_bytes``

Every parquet file carries the ``datasets`` features in its schema metadata (key ``huggingface``)
and the card repeats them, so ``datasets.load_dataset(DEST)`` gives per-frame FLAME columns as
``List(List(Value("float32"), length=N))`` and audio as ``Audio(sampling_rate=16000)`` without any
encoder (audio is stored as ``struct<bytes, path>`` wav bytes). Splits are made by identity: a
group (``export.by``) is hashed with the seed into one split, so no identity is in two splits and
a re-export of a grown dataset keeps every group where it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from flameqa import __version__
from flameqa.export.config import ExportConfig
from flameqa.io import shards as sh
from flameqa.io.schema import load_schema
from flameqa.security import redact_obj, redact_text

log = logging.getLogger(__name__)

GROUP_COLUMN = {"identity": "identity", "video": "video_id", "clip": "clip_id"}
STAGING = ".flameqa-export.tmp"
"""Folder inside DEST where an export is built before it is swapped in (never published)."""
AUDIO_RATE = 16000

# Hub license ids the roll-up may emit as-is (lower case); anything else becomes "other".
HUB_LICENSES = frozenset(
    """apache-2.0 mit bsd-2-clause bsd-3-clause cc0-1.0 cc-by-2.0 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0
    cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-4.0 cc-by-nc-sa-4.0 odc-by odbl pddl
    gpl-3.0 lgpl-3.0 openrail unlicense other unknown""".split()
)

FLAMEQA_BIBTEX = """@software{{flameqa,
  title   = {{flameqa: FLAME-QA question/answer datasets from conversational talking-head video}},
  version = {{{version}}},
  year    = {{2026}},
  note    = {{Toolkit that built this dataset}}
}}"""

FLAME_BIBTEX = """@article{FLAME:SiggraphAsia2017,
  title   = {Learning a model of facial shape and expression from {4D} scans},
  author  = {Li, Tianye and Bolkart, Timo and Black, Michael J. and Li, Hao and Romero, Javier},
  journal = {ACM Transactions on Graphics (Proc. SIGGRAPH Asia)},
  volume  = {36},
  number  = {6},
  pages   = {194:1--194:17},
  year    = {2017}
}"""


@dataclass
class SplitStats:
    rows: int = 0
    num_bytes: int = 0
    """Uncompressed Arrow bytes."""
    files: list[str] = field(default_factory=list)
    file_bytes: int = 0
    groups: int = 0
    duration_s: float = 0.0


@dataclass
class ExportReport:
    dest: Path
    splits: dict[str, SplitStats]
    empty_splits: list[str]
    """Splits with a positive fraction that received no group (left out of the card)."""


# ---------------------------------------------------------------------------------------------
# splits (pure)


def split_hash(group: str, seed: int) -> float:
    """Uniform number in [0, 1) from ``sha256(seed, group)``: the group's place in hash space."""
    d = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2.0**64


def assign_splits(groups: Iterable[str], fractions: Mapping[str, float], seed: int = 0) -> dict[str, str]:
    """Map each group to one split: the split whose slice of [0, 1) holds the group's hash.

    Slices follow ``fractions`` (normalised) in their given order. A group's split depends only on
    the group, the fractions and the seed, so adding data never moves a group. Repair for tiny
    datasets: a split with a positive fraction left empty takes the group nearest its slice from a
    split that has at least two groups (deterministic), so e.g. two videos split 0.9/0.1 still
    give a non-empty test split.
    """
    names = list(fractions)
    total = float(sum(fractions.values()))
    edges, acc = [], 0.0
    for n in names:
        acc += fractions[n] / total
        edges.append(acc)
    u = {g: split_hash(g, seed) for g in sorted(set(groups))}
    out: dict[str, str] = {}
    for g, x in u.items():
        k = next((i for i, e in enumerate(edges) if x < e), len(names) - 1)
        out[g] = names[k]
    for k, n in enumerate(names):
        if fractions[n] <= 0 or n in out.values():
            continue
        lo, hi = (edges[k - 1] if k else 0.0), edges[k]
        sizes = Counter(out.values())
        donors = [g for g in u if sizes[out[g]] >= 2]
        if not donors:
            continue
        g = min(donors, key=lambda g: (min(abs(u[g] - lo), abs(u[g] - hi)), g))
        out[g] = n
    return out


# ---------------------------------------------------------------------------------------------
# features


def hf_features(schema: pa.Schema, audio_rate: int = AUDIO_RATE):
    """``datasets.Features`` of a samples schema: types inferred from Arrow (fixed-size lists give
    ``List(..., length=N)``), columns with ``hf: audio`` metadata become ``Audio(sampling_rate)``."""
    from datasets import Audio, Features
    from datasets.features.features import generate_from_arrow_type

    feats = {}
    for f in schema:
        meta = f.metadata or {}
        if meta.get(b"hf") == b"audio":
            feats[f.name] = Audio(sampling_rate=audio_rate)
        else:
            feats[f.name] = generate_from_arrow_type(f.type)
    return Features(feats)


def _schema_with_features(features) -> pa.Schema:
    """The samples Arrow schema (field docs kept) + the ``huggingface`` metadata ``datasets`` reads."""
    base = load_schema("samples").arrow
    meta = dict(base.metadata or {})
    meta[b"huggingface"] = json.dumps({"info": {"features": features.to_dict()}}).encode()
    return base.with_metadata(meta)


# ---------------------------------------------------------------------------------------------
# writing


class _SplitWriter:
    """Writes one split's rows into parquet files closed at ``shard_bytes`` (temp names until the end)."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, cfg: ExportConfig) -> None:
        self.folder, self.split, self.schema, self.cfg = folder, split, schema, cfg
        self.paths: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.cur_bytes = 0
        self.stats = SplitStats()

    def _open(self) -> None:
        p = self.folder / f".{self.split}-{len(self.paths):05d}.parquet.tmp"
        self.paths.append(p)
        comp = None if self.cfg.compression == "none" else self.cfg.compression
        self.writer = pq.ParquetWriter(p, self.schema, compression=comp)
        self.cur_bytes = 0

    def write(self, t: pa.Table) -> None:
        if t.num_rows == 0:
            return
        t = t.cast(self.schema)
        per_row = max(1, t.nbytes // t.num_rows)
        step = max(1, min(self.cfg.row_group_bytes, self.cfg.shard_bytes) // per_row)
        for s in range(0, t.num_rows, step):
            part = t.slice(s, step)
            if self.writer is None:
                self._open()
            self.writer.write_table(part, row_group_size=part.num_rows)
            self.cur_bytes += part.nbytes
            self.stats.rows += part.num_rows
            self.stats.num_bytes += part.nbytes
            if self.cur_bytes >= self.cfg.shard_bytes:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self) -> list[str]:
        """Close and rename to ``<split>-NNNNN-of-NNNNN.parquet``; returns the names."""
        self.close()
        n = len(self.paths)
        names = []
        for i, p in enumerate(self.paths):
            name = f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            os.replace(p, self.folder / name)
            names.append(name)
            self.stats.file_bytes += (self.folder / name).stat().st_size
        self.stats.files = [f"data/{x}" for x in names]
        return names


def _batches(out: Path, batch_rows: int = 64) -> Iterable[pa.Table]:
    schema = load_schema("samples").arrow
    for idx in sh.completed_shards(out, "samples"):
        pf = pq.ParquetFile(sh.shard_path(out, "samples", idx))
        for b in pf.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([b]).cast(schema)


def export_dataset(out: str | os.PathLike, dest: str | os.PathLike, config: ExportConfig | None = None) -> ExportReport:
    """Write the Hub-layout folder ``dest`` from the completed ``samples`` shards of run ``out``.

    Replaces ``dest/README.md`` and ``dest/data/`` (other files in ``dest`` are kept). Raises
    ValueError when ``out`` has no completed samples shard.
    """
    cfg = config or ExportConfig()
    out, dest = Path(out), Path(dest)
    shards = sh.completed_shards(out, "samples")
    if not shards:
        raise ValueError(f"no completed samples shards under {out / 'samples'}: run `flameqa assemble --out {out}` first")
    col = GROUP_COLUMN[cfg.by]
    # pass 1: the groups (a few small columns)
    light = sh.read_table(out, "samples", columns=[col])
    groups = light.column(col).to_pylist()
    mapping = assign_splits(groups, cfg.splits, cfg.seed)
    features = hf_features(load_schema("samples").arrow)
    schema = _schema_with_features(features)
    # pass 2: rows to the split writers, in a staging folder swapped in at the end
    stage_dir = dest / STAGING
    shutil.rmtree(stage_dir, ignore_errors=True)
    (stage_dir / "data").mkdir(parents=True)
    writers = {s: _SplitWriter(stage_dir / "data", s, schema, cfg) for s in cfg.splits}
    tallies: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    seen_groups: dict[str, set] = defaultdict(set)
    for t in _batches(out):
        keys = t.column(col).to_pylist()
        split_of = [mapping[k] for k in keys]
        info = t.select(["mode", "question_source", "model_id", "license", "source", "video_id", "clip_id", "duration_s", "listen_expression"])
        for i, s in enumerate(split_of):
            seen_groups[s].add(keys[i])
        for s in set(split_of):
            mask = pa.array([x == s for x in split_of])
            writers[s].write(t.filter(mask))
            sub = info.filter(mask)
            tl = tallies[s]
            for name in ("mode", "model_id", "license", "source", "video_id", "clip_id"):
                tl[name].update(str(v) if v is not None else "unknown" for v in sub.column(name).to_pylist())
            tl["question_source"].update(str(v).split(":")[0] if v else "unknown" for v in sub.column("question_source").to_pylist())
            tl["llm_model"].update(str(v).split(":", 1)[1] for v in sub.column("question_source").to_pylist() if v and v.startswith("llm:"))
            tl["listening"]["with"] += sub.num_rows - sub.column("listen_expression").null_count
            writers[s].stats.duration_s += float(sum(x for x in sub.column("duration_s").to_pylist() if x is not None))
    stats: dict[str, SplitStats] = {}
    empty: list[str] = []
    for s, w in writers.items():
        w.finish()
        if w.stats.rows:
            w.stats.groups = len(seen_groups[s])
            stats[s] = w.stats
        elif cfg.splits[s] > 0:
            empty.append(s)
            log.warning("split %r received no %s (too few groups for the fractions): it is left out of the dataset", s, col)
    card = render_card(out, dest, cfg, features, stats, tallies)
    (stage_dir / "README.md").write_text(card, encoding="utf-8")
    # swap in: old data/ and README.md go, the staged ones take their place
    dest.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest / "data", ignore_errors=True)
    os.replace(stage_dir / "data", dest / "data")
    os.replace(stage_dir / "README.md", dest / "README.md")
    shutil.rmtree(stage_dir, ignore_errors=True)
    log.info("exported %s to %s", ", ".join(f"{s}: {v.rows} samples in {len(v.files)} files" for s, v in stats.items()), dest)
    return ExportReport(dest=dest, splits=stats, empty_splits=empty)


# ---------------------------------------------------------------------------------------------
# the dataset card


def license_rollup(counts: Mapping[str, int], override: str | None = None) -> tuple[str, str | None]:
    """(Hub license id, license_name for ``other``) from per-license sample counts.

    One known license → that id; several → ``other`` with a ``mixed: a, b`` name; unknown ones →
    ``other`` with their name; none recorded → ``unknown``. ``override`` wins.
    """
    if override:
        o = override.strip().lower()
        return (o, None) if o in HUB_LICENSES else ("other", override)
    names = sorted({(k or "unknown").strip() for k in counts})
    known = [n.lower() for n in names if n.lower() != "unknown"]
    if not known:
        return "unknown", None
    if len(set(known)) == 1 and "unknown" not in [n.lower() for n in names]:
        lic = known[0]
        return (lic, None) if lic in HUB_LICENSES else ("other", names[0])
    return "other", "mixed: " + ", ".join(names)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (FileNotFoundError, yaml.YAMLError):
        return {}


def build_provenance(out: Path) -> dict[str, Any]:
    """How the run was made: config hash, per-table marker hashes and versions, backends/model ids
    found in ``OUT/config.yaml`` (secrets redacted), assemble rejection counts."""
    from flameqa.config import config_hash

    cfg = redact_obj(_read_yaml(out / "config.yaml"))
    prov: dict[str, Any] = {"flameqa_version": __version__, "config_hash": config_hash(cfg) if cfg else None}
    backends: dict[str, Any] = {}

    def walk(d: Any, prefix: str) -> None:
        if isinstance(d, dict):
            for k, v in d.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(d, (str, int, float, bool)) and any(w in prefix.rsplit(".", 1)[-1].lower() for w in ("backend", "model", "device", "fps")):
            if d is not None and "key" not in prefix.lower() and "token" not in prefix.lower():
                backends[prefix] = d

    walk(cfg, "")
    prov["settings"] = backends
    tables: dict[str, Any] = {}
    rejected: Counter = Counter()
    candidates: Counter = Counter()
    failed_clips = 0
    for t in sh.list_table_dirs(out):
        hashes, versions, rows = set(), set(), 0
        for i in sh.completed_shards(out, t):
            m = sh.read_marker(out, t, i) or {}
            hashes.add(str(m.get("config_hash")))
            versions.add(str(m.get("version")))
            rows += int(m.get("rows") or 0)
            if t == "samples":
                ex = m.get("extra") or {}
                rejected.update(ex.get("rejected") or {})
                candidates.update(ex.get("candidates") or {})
                failed_clips += len(ex.get("failed_clips") or [])
        tables[t] = {"rows": rows, "config_hashes": sorted(hashes), "versions": sorted(versions)}
    prov["tables"] = tables
    prov["assemble"] = {"candidates": dict(candidates), "rejected": dict(rejected), "failed_clips": failed_clips}
    prov["assemble_config"] = cfg.get("assemble") if isinstance(cfg, dict) else None
    return prov


def _fmt_h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.1f} s"


def render_card(out: Path, dest: Path, cfg: ExportConfig, features, stats: Mapping[str, SplitStats], tallies) -> str:
    """README.md: YAML front matter (configs, dataset_info, license, tags) and the documentation."""
    from datasets import DatasetInfo
    from datasets.splits import SplitDict, SplitInfo

    total: dict[str, Counter] = defaultdict(Counter)
    for s in stats:
        for k, c in tallies[s].items():
            total[k].update(c)
    lic, lic_name = license_rollup(total["license"], cfg.license)
    splits = SplitDict()
    for s, st in stats.items():
        splits.add(SplitInfo(name=s, num_bytes=st.num_bytes, num_examples=st.rows))
    info = DatasetInfo(
        features=features,
        splits=splits,
        download_size=sum(st.file_bytes for st in stats.values()),
        dataset_size=sum(st.num_bytes for st in stats.values()),
    )
    di = info._to_yaml_dict()
    n_rows = sum(st.rows for st in stats.values())
    size_cat = "n<1K" if n_rows < 1000 else "1K<n<10K" if n_rows < 10_000 else "10K<n<100K" if n_rows < 100_000 else "100K<n<1M" if n_rows < 1_000_000 else "n>1M"
    meta: dict[str, Any] = {"license": lic}
    if lic_name:
        meta["license_name"] = lic_name
    meta.update(
        {
            "pretty_name": cfg.pretty_name or f"FLAME-QA ({dest.resolve().name})",
            "language": ["en"],
            "task_categories": ["question-answering", "text-to-speech", "audio-to-audio"],
            "tags": ["flame", "3d-face", "talking-head", "facial-animation", "dyadic", "flameqa"],
            "size_categories": [size_cat],
            "configs": [{"config_name": cfg.config_name, "data_files": [{"split": s, "path": f"data/{s}-*"} for s in stats]}],
            "dataset_info": {"config_name": cfg.config_name, **di},
        }
    )
    prov = build_provenance(out)
    schema = load_schema("samples")
    hours = sum(st.duration_s for st in stats.values())
    lines: list[str] = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    add = lines.append
    add(f"# {meta['pretty_name']}")
    add("")
    add(
        "FLAME-QA question/answer samples built from conversational talking-head video with "
        f"flameqa {__version__}. Each sample pairs a question (spoken by another "
        "speaker, or generated for a monologue segment) with an answer that carries its text, word timings, "
        "16 kHz audio and the answerer's per-frame FLAME parameters over the answer span; dialogue samples "
        "also carry the answerer's motion while listening to the question when the answerer was on camera."
    )
    add("")
    add("## Contents")
    add("")
    add("| split | samples | answer audio | groups (" + cfg.by + ") | parquet files | size |")
    add("|---|---:|---:|---:|---:|---:|")
    for s, st in stats.items():
        add(f"| {s} | {st.rows} | {_fmt_h(st.duration_s)} | {st.groups} | {len(st.files)} | {st.file_bytes / 2**20:.1f} MiB |")
    add("")
    add(f"- samples: {n_rows} ({_fmt_h(hours)} of answers); modes: " + ", ".join(f"{k} {v}" for k, v in sorted(total["mode"].items())))
    add("- question sources: " + ", ".join(f"{k} {v}" for k, v in sorted(total["question_source"].items())))
    if total["llm_model"]:
        add("- question generator models: " + ", ".join(f"`{k}` ({v})" for k, v in sorted(total["llm_model"].items())))
    add(f"- with listening motion: {total['listening']['with']}")
    add(f"- videos: {len(total['video_id'])}, clips: {len(total['clip_id'])}")
    add("- face models (`model_id`): " + ", ".join(f"`{k}` ({v})" for k, v in sorted(total["model_id"].items())))
    add(f"- splits are made by `{GROUP_COLUMN[cfg.by]}` (seed {cfg.seed}, fractions {dict(cfg.splits)}): no group is in two splits.")
    add("")
    add("## Loading")
    add("")
    add("```python")
    add("import numpy as np, io, soundfile as sf")
    add("from datasets import load_dataset, Audio")
    add("")
    add("ds = load_dataset(\"<this repo or folder>\", split=\"train\")")
    add("# reading a row decodes its Audio(16 kHz) columns, which `datasets` does with torchcodec;")
    add("# without it, keep the wav bytes (or read columns: ds.with_format(\"numpy\")[\"expression\"])")
    add("for col in (\"answer_audio\", \"question_audio\"):")
    add("    ds = ds.cast_column(col, Audio(decode=False))")
    add("row = ds[0]")
    add("expr = np.asarray(row[\"expression\"], np.float32)   # [T, 100] at row['fps'] frames/s")
    add("wav, sr = sf.read(io.BytesIO(row[\"answer_audio\"][\"bytes\"]))")
    add("```")
    add("")
    add("Motion frame `f` of a sample is at `clip_start_s + frame_idx[f] / fps` seconds of the source video; "
        "relative to the answer audio it starts at `motion_offset_s`. `valid[f]` is false where the face was "
        "not detected or the fit did not converge (those values are a smoothed fill, not observations).")  # fmt: skip
    add("")
    add("## Columns")
    add("")
    add("| column | type | description |")
    add("|---|---|---|")
    for c in schema.columns:
        shape = f" per frame {list(c.shape)}" if c.shape else ""
        t = "Audio(16 kHz)" if c.hf == "audio" else str(c.type).replace("|", "/")
        doc = " ".join(c.doc.split()).replace("|", "\\|").replace("<", "&lt;")
        add(f"| `{c.name}` | `{t}` | {doc}{shape} |")
    add("")
    add("## How it was built")
    add("")
    add(f"- flameqa {prov['flameqa_version']}; pipeline config hash `{prov['config_hash']}` (of the run's `config.yaml`)")
    for t, v in prov["tables"].items():
        add(f"- table `{t}`: {v['rows']} rows; stage config hash(es) {', '.join(f'`{h}`' for h in v['config_hashes'])}")
    if prov["settings"]:
        add("- backends and models: " + ", ".join(f"`{k}={v}`" for k, v in sorted(prov["settings"].items())))
    a = prov["assemble"]
    if a["candidates"]:
        add("- assemble candidates: " + ", ".join(f"{k} {v}" for k, v in sorted(a["candidates"].items())))
    if a["rejected"]:
        add("- rejected by filters: " + ", ".join(f"{k} {v}" for k, v in sorted(a["rejected"].items())))
    if a["failed_clips"]:
        add(f"- clips that failed in assemble: {a['failed_clips']}")
    if prov.get("assemble_config"):
        ac = redact_obj(prov["assemble_config"])
        add("")
        add("<details><summary>assemble config</summary>")
        add("")
        add("```yaml")
        add(yaml.safe_dump(ac, sort_keys=False, default_flow_style=None, width=100).rstrip())
        add("```")
        add("</details>")
    add("")
    add("## License")
    add("")
    add(f"Card license: `{lic}`" + (f" ({lic_name})" if lic_name else "") + ". Per source license (samples):")
    add("")
    add("| license | samples |")
    add("|---|---:|")
    for k, v in sorted(total["license"].items()):
        add(f"| {k} | {v} |")
    add("")
    srcs = sorted(total["source"].items())
    if srcs:
        add("Sources: " + "; ".join(f"{k} ({v})" for k, v in srcs[:50]) + (f"; … {len(srcs) - 50} more" if len(srcs) > 50 else ""))
        add("")
    add("The FLAME parameters are coefficients of the FLAME head model (`model_id` says which). Turning them into "
        "meshes needs that model, which has its own license (https://flame.is.tue.mpg.de); this dataset does not "
        "contain it.")  # fmt: skip
    add("")
    add("## Citation")
    add("")
    add("```bibtex")
    add(FLAMEQA_BIBTEX.format(version=__version__))
    add("")
    add(FLAME_BIBTEX)
    if cfg.citation:
        add("")
        add(cfg.citation.strip())
    add("```")
    add("")
    add("The FLAME-QA format follows A²-LLM (arXiv:2602.04913).")
    add("")
    return redact_text("\n".join(lines))
