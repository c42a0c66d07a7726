"""A small stage for executor tests, registered in place of a real one only inside a test.

``SynthFaces`` reads ``clips`` and writes one ``faces`` row per clip whose every column is filled
deterministically from the clip id and the column's schema type (so it follows schema changes and
writes real ``list<fixed_size_list<float32,N>>`` columns). ``StageContext.extra`` steers faults:

- ``fail_clips``: clip ids whose call raises ValueError (→ failed rows through ``on_error``);
- ``kill_clips`` + ``flag_dir``: the first call that sees one of these clips SIGKILLs its own
  process (a killed actor); a flag file makes later attempts succeed;
- ``poison_clips``: clip ids that SIGKILL the process on every attempt;
- ``interrupt_clips``: raise ``Interrupted`` (a BaseException, like Ctrl-C) to abort a local run.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from flameqa.io.schema import conform, load_schema
from flameqa.stages.base import Stage, StageContext

SPEC = "tests.executors.dummy_stages:SynthFaces"
FRAMES = 6


class Interrupted(BaseException):
    """Stands for Ctrl-C / SIGTERM in the middle of a stage."""


def _value(t: pa.DataType, rng: np.random.Generator, n_frames: int) -> Any:
    if pa.types.is_string(t):
        return f"s{rng.integers(1000)}"
    if pa.types.is_boolean(t):
        return bool(rng.integers(2))
    if pa.types.is_integer(t):
        return int(rng.integers(100))
    if pa.types.is_floating(t):
        return float(rng.normal())
    if pa.types.is_fixed_size_list(t):
        return rng.normal(size=t.list_size).astype(np.float32).tolist()
    if pa.types.is_list(t):
        return [_value(t.value_type, rng, n_frames) for _ in range(n_frames)]
    if pa.types.is_struct(t):
        return {f.name: _value(f.type, rng, n_frames) for f in t}
    if pa.types.is_binary(t):
        return bytes(rng.integers(0, 256, 4, dtype=np.uint8))
    raise TypeError(f"no synthetic value for {t}")


def synth_row(table: str, clip: dict[str, Any]) -> dict[str, Any]:
    seed = int(hashlib.sha256(clip["clip_id"].encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    row = {c.name: _value(c.type, rng, FRAMES) for c in load_schema(table).columns}
    for k in ("clip_id", "video_id"):
        if k in row:
            row[k] = clip[k]
    row.update(status="ok", error=None)
    return row


class SynthFaces(Stage):
    name = "faces"
    input_table = "clips"
    output_tables = ("faces",)

    def __init__(self, config: Any, ctx: StageContext) -> None:
        super().__init__(config, ctx)
        self.extra = dict(ctx.extra)

    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        rows = []
        for clip in batch.to_pylist():
            cid = clip["clip_id"]
            if cid in self.extra.get("interrupt_clips", ()):
                raise Interrupted(cid)
            if cid in self.extra.get("poison_clips", ()):
                os.kill(os.getpid(), signal.SIGKILL)
            if cid in self.extra.get("kill_clips", ()):
                flag = Path(self.extra["flag_dir"]) / f"killed-{cid}"
                if not flag.exists():
                    flag.write_text(str(os.getpid()))
                    os.kill(os.getpid(), signal.SIGKILL)
            if cid in self.extra.get("fail_clips", ()):
                raise ValueError(f"synthetic failure on {cid}")
            rows.append(synth_row("faces", clip))
        return {"faces": conform("faces", rows)}

    def on_error(self, batch: pa.Table, error: str) -> dict[str, pa.Table]:
        rows = []
        for clip in batch.to_pylist():
            r = synth_row("faces", clip)
            r.update(status="failed", error=error)
            rows.append(r)
        return {"faces": conform("faces", rows)}


class SynthFit(SynthFaces):
    """The same rows from a stage that asks for a GPU; ``flags`` records the GPUs Ray gave it."""

    uses_gpu = True

    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        res = super().__call__(batch, side)["faces"]
        gpus = f"cuda_visible={os.environ.get('CUDA_VISIBLE_DEVICES')}|device={self.ctx.device}"
        flags = pa.array([[gpus]] * res.num_rows, type=res.schema.field("flags").type)
        return {"faces": res.set_column(res.schema.get_field_index("flags"), res.schema.field("flags"), flags)}


GPU_SPEC = "tests.executors.dummy_stages:SynthFit"


class BrokenInit(SynthFaces):
    """A stage whose models cannot load (every actor fails in ``__init__``)."""

    def __init__(self, config: Any, ctx: StageContext) -> None:
        raise FileNotFoundError("model file /models/missing.task is absent on this node")


BROKEN_SPEC = "tests.executors.dummy_stages:BrokenInit"
