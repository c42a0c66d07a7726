"""The demo run is a test: the whole pipeline on the shipped clips, asserting on its outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flameqa.io.shards import read_table


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from flameqa.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, train=True)


def test_demo_runs_every_step(demo):
    assert demo.errors == {}, demo.errors
    s = json.loads((demo.out / "demo_summary.json").read_text())
    assert s["samples"] >= 3
    assert s["median_fit_nme_pct"] is not None and s["median_fit_nme_pct"] < 5.0
    assert isinstance(s["wer_conversation"], float) and s["wer_conversation"] < 0.5


def test_demo_dialogue_pairs_are_the_composed_questions(demo):
    run = demo.out / "run"
    samples = read_table(run, "samples").to_pylist()
    dialogue = [x for x in samples if x["mode"] == "dialogue"]
    assert len(dialogue) >= 2
    truth = json.loads((demo.out / "inputs" / "truth.json").read_text())
    questions = [t["text"] for t in truth if t["speaker"] == "interviewer"]
    for d in dialogue:
        assert d["question_source"] == "spoken"
        # the question text is one of the spoken questions (ASR may differ in punctuation/case)
        norm = lambda x: "".join(ch for ch in x.lower() if ch.isalpha())
        assert any(norm(q)[:15] in norm(d["question_text"]) for q in questions), d["question_text"]
        # the answerer is on camera; its motion covers the answer span at 25 fps
        T = len(d["jaw"])
        assert abs(T - round(25 * (d["answer_end_s"] - d["answer_start_s"]))) <= 2
        assert np.isfinite(np.asarray(d["expression"], np.float32)).all()


def test_demo_outputs_exist_and_load(demo):
    o = demo.outputs
    assert o["overlay video"].exists() and o["overlay video"].stat().st_size > 10_000
    assert list(o["overlay video"].parent.glob("*.png")), "the renderer saves PNG frames to look at"
    assert o["QC report"].read_text().count("data:image/png;base64") >= 3
    assert demo.summary["load_dataset"] and sum(demo.summary["load_dataset"].values()) >= 3
    for k in ("notebook inspect_samples", "notebook qc"):
        assert o[k].exists()
