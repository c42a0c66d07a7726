"""Helpers of the reliability suite: run the real CLI (optionally killed at a named point), compare
two output folders row by row, and check what table readers see in a folder after a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow.parquet as pq

from flameqa.io import shards as sh
from tests.conftest import ROOT

CODE: dict[str, Path] = {}
"""``root``: where the CLI runs take ``flameqa`` and ``pipelines/`` from (a snapshot taken at session
start, see :func:`snapshot_code`): the working tree may change while a long session runs, and a
clean run and its resumed twin must run the same code."""


def snapshot_code(dest: Path) -> Path:
    """Copy the package (symlinked schemas resolved) and the pipelines to ``dest`` for every CLI run."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "flameqa", dest / "flameqa", ignore=ignore)
    shutil.copytree(ROOT / "pipelines", dest / "pipelines", ignore=ignore)
    CODE["root"] = dest
    return dest


def code_root() -> Path:
    return CODE.get("root", ROOT)
STAGES = ("ingest", "speech", "faces", "speakers", "fit", "assemble")
STAGE_TABLES = {
    "ingest": ("videos", "clips"),
    "speech": ("speech", "words"),
    "faces": ("faces",),
    "speakers": ("speakers_faces",),
    "fit": ("flame",),
    "assemble": ("samples",),
}
"""Output tables of each stage, in the order the runner writes them (checked against the stage classes)."""
POINTS = ("start", "write", "rename", "marker", "marker1", "done")
"""Kill points of ``flameqa.io.shards.fault_point``; ``rename`` is addressed by table, the rest by stage."""

PLANTED_HF_TOKEN = "hf_PLANTEDTOKEN1234567890"
PLANTED_LLM_KEY = "sk-PLANTEDLLMKEY0987654321"
PLANTED_SECRETS = (PLANTED_HF_TOKEN, PLANTED_LLM_KEY, "PLANTEDTOKEN", "PLANTEDLLMKEY")


def base_env(**extra: str) -> dict[str, str]:
    """Environment of every CLI run here: offline, a planted HF token (it must never reach a file)."""
    env = {k: v for k, v in os.environ.items() if k != sh.KILL_ENV}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        FLAMEQA_LOG="WARNING",
        HF_TOKEN=PLANTED_HF_TOKEN,
        PYTHONPATH=os.pathsep.join(dict.fromkeys([str(code_root()), str(ROOT), env.get("PYTHONPATH", "")])).rstrip(os.pathsep),
    )
    env.update(extra)
    return env


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    kill_at: str | None = None

    @property
    def killed(self) -> bool:
        return self.returncode == -9

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return f"flameqa {' '.join(self.args)} (kill_at={self.kill_at}) → rc {self.returncode}\n{self.output[-3000:]}"


def run_flameqa(args: Iterable[str], kill_at: str | None = None, env: dict[str, str] | None = None, timeout: float = 900) -> CliResult:
    """Run ``python -m flameqa ARGS`` in a fresh process; ``kill_at`` = ``<stage|table>:<point>[:<shard>]``."""
    args = [str(a) for a in args]
    e = dict(env or base_env())
    if kill_at:
        e[sh.KILL_ENV] = kill_at
    # cwd is the snapshot: `python -m` puts the working directory first on sys.path, before PYTHONPATH
    p = subprocess.run([sys.executable, "-m", "flameqa", *args], cwd=code_root(), env=e, capture_output=True, text=True, timeout=timeout)
    return CliResult(args, p.returncode, p.stdout, p.stderr, kill_at)


#: Whisper samples every window (temperature 1, its fallback's last step) instead of only where
#: beam search fails, which these short clips never do: a resumed shard must still come out as in
#: the clean run, where the same process had transcribed the shard before it.
SAMPLE_ALWAYS = "speech.asr.temperature=[1.0]"


def pipeline_args(manifest: Path, out: Path, *sets: str, pipeline: Path | None = None) -> list[str]:
    """``flameqa run`` of the demo pipeline with two shards per stage (the conversation, a GRID clip),
    Whisper sampling (:data:`SAMPLE_ALWAYS`)."""
    pipeline = pipeline or code_root() / "pipelines" / "demo.yaml"
    args = ["run", str(pipeline), "--input", str(manifest), "--out", str(out), "--set", "ingest.videos_per_shard=1", "--set", SAMPLE_ALWAYS]
    for s in sets:
        args += ["--set", s]
    return args


def stage_of_table(table: str) -> str:
    return next(s for s, ts in STAGE_TABLES.items() if table in ts)


def seed_from(clean: Path, dest: Path, drop_stages: Iterable[str]) -> Path:
    """A copy of a finished run without the outputs of ``drop_stages`` (as if those never ran)."""
    shutil.copytree(clean, dest)
    for s in drop_stages:
        for t in STAGE_TABLES[s]:
            shutil.rmtree(dest / t, ignore_errors=True)
    return dest


# ---------------------------------------------------------------------------------------------
# comparing folders


FLOAT_RTOL, FLOAT_ATOL = 1e-3, 1e-4
"""Floats are compared within this tolerance, everything else exactly: a stage resumed in a fresh
process can differ from one run after other stages in the same process in the last float digits
(loading the speech models changes the fit's float32 results at the 1e-5 level)."""


def _split(v: Any, prefixes: tuple[str, ...], floats: list[float]) -> Any:
    """The value with floats replaced by a marker (collected into ``floats``) and run folders by ``OUT``."""
    if isinstance(v, dict):
        return {k: _split(x, prefixes, floats) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_split(x, prefixes, floats) for x in v]
    if isinstance(v, str):
        for p in prefixes:
            v = v.replace(p, "OUT")
        return v
    if isinstance(v, float):
        floats.append(v)
        return "<f>"
    if isinstance(v, bytes):
        return v.hex()
    return v


def split_rows(rows: list[dict], prefixes: tuple[str, ...]) -> tuple[list[str], list[np.ndarray]]:
    """Rows as (skeleton JSON with floats masked, float values) pairs."""
    sk, fl = [], []
    for r in rows:
        floats: list[float] = []
        sk.append(json.dumps(_split(r, prefixes, floats)))
        fl.append(np.asarray(floats, np.float64))
    return sk, fl


def rows_match(a: list[dict], b: list[dict], prefixes: tuple[str, ...]) -> tuple[int, int, float, str | None]:
    """Compare row lists: (rows of ``a`` missing in ``b``, rows of ``b`` not in ``a``, largest float
    difference, problem). Non-float values must be equal, floats close, order the same."""
    ska, fla = split_rows(a, prefixes)
    skb, flb = split_rows(b, prefixes)
    lost = sum((Counter(ska) - Counter(skb)).values())
    extra = sum((Counter(skb) - Counter(ska)).values())
    if lost or extra:
        return lost, extra, float("nan"), f"{lost} rows missing, {extra} rows not in the clean run"
    if ska != skb:
        return 0, 0, float("nan"), "same rows in a different order"
    worst = 0.0
    for x, y in zip(fla, flb):
        if x.size:
            d = np.abs(x - y)
            d = d[~(np.isnan(x) & np.isnan(y))]
            worst = max(worst, float(d.max()) if d.size else 0.0)
            if not np.allclose(x, y, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, equal_nan=True):
                return 0, 0, worst, f"float values differ beyond rtol={FLOAT_RTOL}, atol={FLOAT_ATOL} (max |Δ| {worst:.3g})"
    return 0, 0, worst, None


def _prefixes(*folders: Path) -> tuple[str, ...]:
    return tuple(sorted({s for f in folders for s in (str(f), str(f.resolve()))}, key=len, reverse=True))


@dataclass
class Comparison:
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    """table → (rows in the clean run, rows here)."""
    max_float_diff: dict[str, float] = field(default_factory=dict)
    """table → largest |Δ| of a float value (0.0: bit-exact)."""
    lost: int = 0
    """Rows of the clean run missing here."""
    extra: int = 0
    """Rows here that the clean run does not have (duplicates or different values)."""
    problems: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.problems and not self.lost and not self.extra


def compare_outputs(clean: Path, work: Path) -> Comparison:
    """Every table of ``clean`` against ``work``: same shards, markers, rows (same order; floats close)."""
    prefixes = _prefixes(clean, work)
    c = Comparison()
    tables = sorted(set(sh.list_table_dirs(clean)) | set(sh.list_table_dirs(work)))
    for t in tables:
        a_idx, b_idx = sh.completed_shards(clean, t), sh.completed_shards(work, t)
        if a_idx != b_idx:
            c.problems.append(f"{t}: completed shards {b_idx}, clean run {a_idx}")
        for i in sorted(set(a_idx) & set(b_idx)):
            ma, mb = sh.read_marker(clean, t, i) or {}, sh.read_marker(work, t, i) or {}
            for k in ("rows", "config_hash", "status_counts", "stage", "version"):
                if ma.get(k) != mb.get(k):
                    c.problems.append(f"{t} shard {i}: marker {k} = {mb.get(k)!r}, clean run {ma.get(k)!r}")
        a, b = sh.read_table(clean, t).to_pylist(), sh.read_table(work, t).to_pylist()
        c.tables[t] = (len(a), len(b))
        lost, extra, worst, problem = rows_match(a, b, prefixes)
        c.lost += lost
        c.extra += extra
        c.max_float_diff[t] = worst
        if problem:
            c.problems.append(f"{t}: {problem}")
    return c


def visible_problems(work: Path, clean: Path, tables: Iterable[str] | None = None, with_datasets: Iterable[str] = (), cache: Path | None = None) -> list[str]:
    """What table readers see in ``work`` (e.g. right after a kill), as a list of problems.

    Every ``part-NNNNN.parquet`` a folder reader can see must be complete and equal to the clean run's
    shard ``NNNNN`` (so a reader may see a finished shard whose marker is not written yet, never a
    partial one); temp files must be hidden; flameqa's own reader sees exactly the marked shards;
    ``pyarrow.dataset`` over the folder and (for ``with_datasets``) ``datasets.load_dataset`` read it.
    """
    import pyarrow.dataset as pads

    prefixes = _prefixes(clean, work)
    problems: list[str] = []
    names = list(tables) if tables is not None else sh.list_table_dirs(work)
    for t in names:
        folder = work / t
        if not folder.exists():
            continue
        visible_rows = 0
        for p in sorted(folder.iterdir()):
            if p.name == "_done":
                for m in p.iterdir():
                    if m.name.startswith(".") and m.name.endswith(".tmp"):
                        continue
                    if not (m.suffix == ".json" and m.stem.isdigit()):
                        problems.append(f"{t}: unexpected marker-folder entry {m.name}")
                        continue
                    try:
                        info = json.loads(m.read_text())
                    except json.JSONDecodeError:
                        problems.append(f"{t}: marker {m.name} is not JSON (half-written)")
                        continue
                    part = sh.shard_path(work, t, int(m.stem))
                    if not part.exists():
                        problems.append(f"{t}: marker {m.name} without its shard file")
                    elif pq.read_metadata(part).num_rows != info.get("rows"):
                        problems.append(f"{t}: marker {m.name} says {info.get('rows')} rows, the shard has {pq.read_metadata(part).num_rows}")
                continue
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                continue  # hidden from pyarrow/datasets (leading dot) and not *.parquet
            if not (p.name.startswith("part-") and p.suffix == ".parquet"):
                problems.append(f"{t}: unexpected visible file {p.name}")
                continue
            idx = int(p.stem.split("-")[1])
            try:
                rows = pq.read_table(p).to_pylist()
            except Exception as e:  # noqa: BLE001 - the point of the check
                problems.append(f"{t}: visible shard {p.name} is unreadable: {type(e).__name__}: {e}")
                continue
            visible_rows += len(rows)
            ref = sh.shard_path(clean, t, idx)
            if not ref.exists():
                problems.append(f"{t}: visible shard {p.name} does not exist in the clean run")
            else:
                why = rows_match(pq.read_table(ref).to_pylist(), rows, prefixes)[3]
                if why:
                    problems.append(f"{t}: visible shard {p.name} differs from the clean run's: {why}")
        try:
            n = pads.dataset(folder, format="parquet").count_rows()
            if n != visible_rows:
                problems.append(f"{t}: pyarrow.dataset sees {n} rows, the visible shards hold {visible_rows}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{t}: pyarrow.dataset over the folder fails: {type(e).__name__}: {e}")
        marked = sum((sh.read_marker(work, t, i) or {}).get("rows", 0) for i in sh.completed_shards(work, t))
        if sh.read_table(work, t).num_rows != marked:
            problems.append(f"{t}: read_table sees {sh.read_table(work, t).num_rows} rows, markers say {marked}")
        if t in set(with_datasets) and visible_rows:
            import datasets

            try:
                d = datasets.load_dataset(str(folder), split="train", cache_dir=str(cache or work.parent / f".hf-cache-{work.name}"))
                if d.num_rows != visible_rows:
                    problems.append(f"{t}: datasets.load_dataset sees {d.num_rows} rows, the visible shards hold {visible_rows}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"{t}: datasets.load_dataset(folder) fails: {type(e).__name__}: {e}")
    return problems


def leftover_temps(work: Path) -> list[Path]:
    return list(work.rglob(".*.tmp"))
