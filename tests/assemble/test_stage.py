"""The assemble stage through the local runner on the test conversation: the expected pairs come
out with the right speaker's motion, audio and word times; counts land in the marker; batch
splits, reruns, a missing audio file and the LLM generator behave."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from flameqa.assemble.pairing import expected_frames
from flameqa.assemble.stage import MOTION, AssembleStage
from flameqa.config import load_config
from flameqa.io import shards as sh
from flameqa.io.schema import column_to_numpy
from flameqa.runner import run_pipeline
from flameqa.stages.base import StageContext
from tests.assemble.conftest import CONV, MONO, MODEL_ID

LIST_COLS = ("expression", "jaw", "neck", "global_pose", "eyes", "transl", "listen_expression", "listen_jaw", "listen_neck", "listen_global_pose")


def _run(out, *overrides):
    rep = run_pipeline(load_config(None, list(overrides)), out, stages=["assemble"], show_progress=False)
    assert rep.ok, [r.error for s in rep.stages for r in s.shards]
    return rep


def _samples(out) -> dict[str, dict]:
    t = sh.read_table(out, "samples")
    rows = {}
    for i, r in enumerate(t.select([c for c in t.column_names if c not in LIST_COLS]).to_pylist()):
        for c in LIST_COLS:
            r[c] = column_to_numpy(t.column(c), i)
        rows[r["sample_id"]] = r
    return rows


def _pcm(wav: bytes) -> tuple[np.ndarray, int]:
    x, sr = sf.read(io.BytesIO(wav), dtype="int16")
    return x, sr


def _source_pcm(path: str, start_s: float, end_s: float) -> np.ndarray:
    x, sr = sf.read(path, dtype="int16")
    return x[int(round(start_s * sr)) : int(round(end_s * sr))]


def test_dialogue_pairs_with_the_answerers_motion(conversation):
    _run(conversation.out)
    rows = _samples(conversation.out)
    clip = "conv1.c000"
    utts = conversation.utterances[clip]
    dialogue = sorted((r for r in rows.values() if r["mode"] == "dialogue"), key=lambda r: r["answer_start_s"])
    assert [(r["question_text"], r["answer_text"]) for r in dialogue] == [(CONV[2][1], CONV[3][1]), (CONV[8][1], CONV[9][1])]
    assert [r["sample_id"] for r in dialogue] == [f"{clip}.d0003", f"{clip}.d0009"]
    track = conversation.flame[(clip, 1)]
    clip_start = conversation.clips[clip]["start_s"]
    for r, qi, ai in zip(dialogue, (2, 8), (3, 9)):
        assert (r["question_speaker"], r["answer_speaker"], r["answer_track_id"], r["question_source"]) == ("SPK0", "SPK1", 1, "spoken")
        assert r["model_id"] == MODEL_ID and r["fps"] == 25.0 and r["identity"] == "conv1"
        assert r["license"] == "cc-by-4.0" and r["source"].startswith("test")
        # answer span = the answer's words; motion = the flame rows of B's track for frames in [start, end)
        assert r["answer_start_s"] == pytest.approx(utts[ai].words[0][1]) and r["answer_end_s"] == pytest.approx(utts[ai].words[-1][2])
        exp = expected_frames(clip_start, 25.0, r["answer_start_s"], r["answer_end_s"])
        np.testing.assert_array_equal(r["frame_idx"], exp)
        assert r["n_frames"] == exp.size == r["expression"].shape[0]
        for n in MOTION:
            np.testing.assert_array_equal(r[n], track[n][exp], err_msg=n)
        np.testing.assert_array_equal(r["expression"][:, 0], 2000 + exp)  # track 1 = speaker B
        t0 = clip_start + exp[0] / 25.0
        assert r["motion_offset_s"] == pytest.approx(t0 - r["answer_start_s"], abs=1e-6) and 0 <= r["motion_offset_s"] < 0.04
        assert r["face_visible_ratio"] == 1.0 and 0.03 <= r["nme_mean"] <= r["nme_max"] <= 0.04
        assert r["overlap_ratio"] == 0.0 and r["asr_prob_mean"] == pytest.approx(0.93)
        assert r["duration_s"] == pytest.approx(r["answer_end_s"] - r["answer_start_s"])
        # listening: B's motion while A asks
        qexp = expected_frames(clip_start, 25.0, r["question_start_s"], r["question_end_s"])
        np.testing.assert_array_equal(r["listen_frame_idx"], qexp)
        np.testing.assert_array_equal(r["listen_expression"], track["expression"][qexp])
        np.testing.assert_array_equal(r["listen_jaw"], track["jaw"][qexp])
        assert r["listen_visible_ratio"] == 1.0
        # words relative to the answer start; audio = the source wav over the same span, 16 kHz
        assert [w["word"] for w in r["answer_words"]] == CONV[ai][1].split()
        assert r["answer_words"][0]["start_s"] == 0.0
        assert r["answer_words"][-1]["end_s"] == pytest.approx(r["duration_s"], abs=1e-4)
        pcm, sr = _pcm(r["answer_audio"]["bytes"])
        assert sr == 16000 and r["answer_audio"]["path"] == f"{r['sample_id']}.answer.wav"
        np.testing.assert_array_equal(pcm, _source_pcm(conversation.clips[clip]["audio_path"], r["answer_start_s"], r["answer_end_s"]))
        qpcm, qsr = _pcm(r["question_audio"]["bytes"])
        assert qsr == 16000 and abs(len(qpcm) - (r["question_end_s"] - r["question_start_s"]) * 16000) <= 1
        assert [w["word"] for w in r["question_words"]] == CONV[qi][1].split()
    # context: the runs before the question, times relative to the answer start (negative)
    ctx = dialogue[0]["context"]
    assert [(c["speaker"], c["text"]) for c in ctx] == [("SPK0", CONV[0][1]), ("SPK1", CONV[1][1])]
    assert all(c["end_s"] < 0 for c in ctx)


def test_monologue_and_marker_counts(conversation):
    _run(conversation.out)
    rows = _samples(conversation.out)
    mono = [r for r in rows.values() if r["mode"] == "monologue"]
    by_clip = {r["clip_id"]: r for r in mono}
    m = by_clip["mono1.c000"]
    assert m["answer_text"] == MONO[1][1] and m["answer_speaker"] == "SPK0" and m["answer_track_id"] == 0
    assert m["question_source"] == "template" and m["question_text"].endswith("?") and m["question_audio"] is None
    assert m["listen_expression"] is None and m["question_start_s"] is None
    np.testing.assert_array_equal(m["expression"][:, 0], 1000 + np.asarray(m["frame_idx"]))  # track 0 = the on-camera speaker
    np.testing.assert_array_equal(m["expression"], conversation.flame[("mono1.c000", 0)]["expression"][m["frame_idx"]])
    # B's unanswered long remark in the dialogue becomes a monologue sample too
    assert by_clip["conv1.c000"]["answer_text"] == CONV[5][1] and by_clip["conv1.c000"]["answer_speaker"] == "SPK1"
    ex0 = sh.read_marker(conversation.out, "samples", 0)["extra"]
    assert ex0["samples"] == {"dialogue": 2, "monologue": 1}
    assert ex0["rejected"]["face_not_visible"] == 1  # B's face is lost during "In a small town..."
    assert ex0["rejected"]["no_answer"] == 1  # "Shall we meet again next week?"
    assert ex0["listening"] == 2 and ex0["failed_clips"] == []
    assert ex0["candidates"]["dialogue"] == 4
    ex1 = sh.read_marker(conversation.out, "samples", 1)["extra"]
    assert ex1["rejected"] == {"speaker_off_camera": 1} and ex1["samples"] == {"monologue": 1}


def test_batch_split_invariance(conversation):
    cfg = load_config()
    stage = AssembleStage(cfg.assemble, StageContext(out=conversation.out))
    clips = pa.concat_tables([sh.read_shard(conversation.out, "clips", i) for i in (0, 1)])
    side = {t: pa.concat_tables([sh.read_shard(conversation.out, t, i) for i in (0, 1)]) for t in stage.side_tables}
    together = stage(clips, side)["samples"]
    apart = pa.concat_tables([stage(clips.slice(i, 1), side)["samples"] for i in (0, 1)])
    assert together.num_rows == 4 and together.equals(apart)
    ex = stage.marker_extra()
    assert ex["samples"] == {"dialogue": 4, "monologue": 4}  # counts of both calls, then reset
    assert stage.marker_extra()["samples"] == {}


def test_rerun_skips_and_a_changed_filter_redoes(conversation):
    _run(conversation.out)
    rep = _run(conversation.out)
    assert all(r.skipped for s in rep.stages for r in s.shards)
    rep = _run(conversation.out, "assemble.filters.min_face_visible_ratio=0.0")
    assert not any(r.skipped for s in rep.stages for r in s.shards)
    # the hidden answer now fails the next filter instead
    assert sh.read_marker(conversation.out, "samples", 0)["extra"]["rejected"].get("motion_gap") == 1
    _run(conversation.out, "assemble.modes=[dialogue]")
    assert {r["mode"] for r in _samples(conversation.out).values()} == {"dialogue"}


def test_missing_audio_rejects_that_clips_candidates(conversation):
    import os

    os.remove(conversation.clips["mono1.c000"]["audio_path"])
    _run(conversation.out)
    assert sh.read_marker(conversation.out, "samples", 1)["extra"]["rejected"] == {"speaker_off_camera": 1, "no_audio": 1}
    assert sh.read_marker(conversation.out, "samples", 0)["rows"] == 3


def test_a_failing_clip_is_reported_in_the_marker(conversation, monkeypatch):
    orig = AssembleStage.assemble_clip

    def boom(self, clip, side, counts):
        if clip["clip_id"] == "conv1.c000":
            raise RuntimeError("synthetic failure")
        return orig(self, clip, side, counts)

    monkeypatch.setattr(AssembleStage, "assemble_clip", boom)
    _run(conversation.out)
    ex = sh.read_marker(conversation.out, "samples", 0)["extra"]
    assert ex["failed_clips"][0]["clip_id"] == "conv1.c000" and "synthetic failure" in ex["failed_clips"][0]["error"]
    assert sh.read_marker(conversation.out, "samples", 0)["rows"] == 0


def test_monologue_questions_from_an_llm_endpoint(conversation, monkeypatch):
    from tests.assemble.test_questions import KEY, FakeChat

    chat = FakeChat()
    try:
        monkeypatch.setenv("FLAMEQA_LLM_URL", chat.url)
        monkeypatch.setenv("FLAMEQA_LLM_MODEL", "tiny-chat")
        monkeypatch.setenv("FLAMEQA_LLM_API_KEY", KEY)
        _run(conversation.out)
        mono = [r for r in _samples(conversation.out).values() if r["mode"] == "monologue"]
        assert {r["question_source"] for r in mono} == {"llm:tiny-chat"}
        assert {r["question_text"] for r in mono} == {"What about young?", "What about walk?"}
        assert len(chat.requests) == 2 and list((conversation.out / "cache" / "questions").glob("*.json"))
        for p in conversation.out.rglob("*"):
            if p.is_file() and p.suffix in (".json", ".yaml"):
                assert KEY not in p.read_text()
    finally:
        chat.close()


def test_cli_assemble(conversation):
    from typer.testing import CliRunner

    from flameqa.cli.app import app

    res = CliRunner().invoke(app, ["assemble", "--out", str(conversation.out), "--set", "assemble.filters.min_answer_s=3.5"])
    assert res.exit_code == 0, res.output
    assert "samples: 3 written" in res.output
    res = CliRunner().invoke(app, ["assemble", "--out", str(conversation.out), "--set", "assemble.nope=1"])
    assert res.exit_code == 2 and "nope" in res.output


def test_long_answer_is_cut_at_a_sentence_and_the_rest_becomes_monologue(conversation):
    utts = conversation.utterances["conv1.c000"]
    first_sentence = "I went to the market and bought fresh bread."
    n = len(first_sentence.split())
    cut = utts[3].words[n - 1][2] - utts[3].words[0][1]  # seconds of the first sentence
    _run(conversation.out, f"assemble.filters.max_answer_s={cut + 0.05}", "assemble.monologue.min_segment_s=1.0", "assemble.dialogue.min_listen_visible_ratio=1.01")
    rows = _samples(conversation.out)
    d = rows["conv1.c000.d0003"]
    assert d["answer_text"] == first_sentence and d["answer_end_s"] == pytest.approx(utts[3].words[n - 1][2])
    assert d["listen_expression"] is None and d["listen_visible_ratio"] is None  # listening below the threshold: left out
    rest = [r for r in rows.values() if r["mode"] == "monologue" and r["answer_text"] == "Then I walked home along the river."]
    assert len(rest) == 1 and rest[0]["answer_speaker"] == "SPK1" and rest[0]["answer_start_s"] > d["answer_end_s"]
