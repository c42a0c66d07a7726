"""`make demo`: the whole pipeline end to end on shipped media, on CPU, in a few minutes.

compose a conversation (shipped GRID clips + espeak-ng questions) → ingest → speech → faces →
speakers → fit (demo head) → assemble → export (Hub layout) → load_dataset check → rendered overlay
→ QC report → executed notebooks → a short reference-model training run and a rendered prediction.
Every output path is printed, then a one-screen summary.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class DemoResult:
    out: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _step(res: DemoResult, name: str):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()
            log.info("demo: %s", name)

        def __exit__(self, et, e, tb):
            res.steps[name] = round(time.perf_counter() - self.t, 2)
            if e is not None and not isinstance(e, KeyboardInterrupt):
                res.errors[name] = f"{type(e).__name__}: {e}"
                log.exception("demo step %s failed", name)
                return True  # later steps that do not need this one still run
            return False

    return _T()


def make_inputs(out: Path) -> tuple[Path, list]:
    """Compose the demo conversation under ``out/inputs`` and write its manifest there.

    Returns the manifest path and the truth turns (start/end in seconds).
    """
    from flameqa.demo_media import DEMO_QUESTIONS, compose_conversation, demo_clips

    clips = demo_clips()
    conv = compose_conversation(clips, DEMO_QUESTIONS, out / "inputs" / "conversation.mp4")
    manifest = out / "inputs" / "manifest.jsonl"
    # The manifest reader resolves a relative uri against the manifest's folder, not the working
    # folder, so a path like `demo_out/inputs/conversation.mp4` would be doubled. The composed video
    # is written as a name relative to the manifest (it sits beside it, so the inputs folder stays
    # valid wherever OUT is or moves); the shipped clip lives in the source tree, outside OUT, so it
    # is written absolute.
    rows = [
        {"uri": os.path.relpath(conv.path, manifest.parent), "video_id": "conversation", "license": "CC-BY-4.0", "source": "GRID corpus (Cooke et al. 2006) + espeak-ng questions"},
        {"uri": str(Path(clips[0][0]).resolve()), "video_id": "grid_" + clips[0][0].stem, "license": "CC-BY-4.0", "source": "GRID corpus (Cooke et al. 2006)"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    truth = [t.__dict__ for t in conv.turns]
    (out / "inputs" / "truth.json").write_text(json.dumps(truth, indent=1))
    return manifest, conv.turns


def demo_wer(run: Path, turns) -> float | None:
    """WER of the transcript of the composed conversation against the known words of every turn."""
    from flameqa.io.shards import read_table

    words = read_table(run, "words")
    if words.num_rows == 0:
        return None
    from flameqa.speech.eval import wer  # noqa: F401 - the speech package's normalizer + jiwer

    hyp = " ".join(w for w, c in zip(words.column("word").to_pylist(), words.column("clip_id").to_pylist()) if c.startswith("conversation."))
    ref = " ".join(t.text for t in turns)
    return float(wer([ref], [hyp]))


def run_demo(out: str | os.PathLike = "demo_out", train: bool = True) -> DemoResult:
    from flameqa.config import load_config
    from flameqa.inspect import summarize
    from flameqa.runner import run_pipeline

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out=out)
    run = out / "run"
    turns = []
    with _step(res, "compose"):
        manifest, turns = make_inputs(out)
        res.outputs["input video"] = out / "inputs" / "conversation.mp4"
        res.outputs["manifest"] = manifest
    with _step(res, "pipeline"):
        cfg = load_config(ROOT / "pipelines" / "demo.yaml")
        report = run_pipeline(cfg, run, inputs=str(out / "inputs" / "manifest.jsonl"))
        res.outputs["tables"] = run
        if not report.ok:
            res.errors["pipeline"] = "failed shards: " + ", ".join(f"{s.stage}:{r.shard}" for s in report.stages for r in s.failed_shards)
    with _step(res, "export"):
        from flameqa.export.hub_folder import export_dataset

        export_dataset(run, out / "export")
        res.outputs["export (Hub layout)"] = out / "export"
    with _step(res, "load_dataset"):
        import datasets

        ds = datasets.load_dataset(str(out / "export"))
        res.summary["load_dataset"] = {k: v.num_rows for k, v in ds.items()}
    with _step(res, "render"):
        from flameqa.render.video import render

        from flameqa.io.shards import read_table

        sid = read_table(run, "samples", columns=["sample_id"]).column("sample_id").to_pylist()[0]
        res.outputs["overlay video"] = render(run, sample_id=sid, dest=out / "render" / f"{sid}.mp4", png_every=25)
    with _step(res, "report"):
        from flameqa.report import build_report

        res.outputs["QC report"] = build_report(run, out / "report.html")
    with _step(res, "notebooks"):
        from flameqa.notebooks import execute_notebooks

        for name, path in execute_notebooks(out / "export", run, out / "notebooks").items():
            res.outputs[f"notebook {name}"] = path
    if train:
        with _step(res, "train"):
            from flameqa.train.demo import demo_train

            for k, v in demo_train(out / "export", out / "train", run).items():
                res.outputs[k] = v
    with _step(res, "summary"):
        res.summary.update(summary_numbers(run, turns))
        res.summary["tables"] = {t: i["rows"] for t, i in summarize(run).items()}
    (out / "demo_summary.json").write_text(json.dumps({"outputs": {k: str(v) for k, v in res.outputs.items()}, **res.summary, "steps_s": res.steps, "errors": res.errors}, indent=1, default=str))
    return res


def summary_numbers(run: Path, turns) -> dict[str, Any]:
    import numpy as np

    from flameqa.inspect import summarize
    from flameqa.io.shards import read_table

    s: dict[str, Any] = {}
    summ = summarize(run)
    samples = read_table(run, "samples", columns=["duration_s", "nme_mean", "mode"]) if "samples" in summ else None
    s["samples"] = 0 if samples is None else samples.num_rows
    if samples is not None and samples.num_rows:
        s["sample_hours"] = round(float(np.sum(samples.column("duration_s").to_numpy())) / 3600, 4)
        s["samples_by_mode"] = {m: samples.column("mode").to_pylist().count(m) for m in set(samples.column("mode").to_pylist())}
    vids = summ.get("videos", {})
    s["videos"] = vids.get("rows", 0)
    s["failures"] = {t: sum(n for k, n in i["status"].items() if k not in ("ok",)) for t, i in summ.items()}
    if "flame" in summ:
        nme = [x for row in read_table(run, "flame", columns=["nme"]).column("nme").to_pylist() for x in (row or []) if x == x]
        s["median_fit_nme_pct"] = round(100 * float(np.median(nme)), 3) if nme else None
    try:
        s["wer_conversation"] = demo_wer(run, turns) if turns else None
    except Exception as e:  # noqa: BLE001
        s["wer_conversation"] = f"n/a ({e})"
    return s
