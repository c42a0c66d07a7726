"""Pure pairing functions: question detection, runs, dialogue pairs, sentences, segments, spans."""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.assemble.config import DEFAULT_QUESTION_WORDS
from flameqa.assemble.filters import Metrics, motion_metrics, reject_reason
from flameqa.assemble.config import FilterConfig
from flameqa.assemble.pairing import (
    Turn,
    Word,
    expected_frames,
    head_within,
    is_question,
    merge_runs,
    overlap_ratio,
    pack_segments,
    pair_dialogue,
    sentence_spans,
    split_sentences,
    tail_within,
)

QW = DEFAULT_QUESTION_WORDS


@pytest.mark.parametrize(
    "text, rule, expected",
    [
        ("What did you do today?", "punctuation", True),
        ("I saw your show. What did you do today?", "punctuation", True),
        ("What did you do today? Tell me.", "punctuation", False),  # ends with a statement
        ("How long have you lived there", "punctuation", False),
        ("How long have you lived there", "question_word", True),
        ("How long have you lived there", "either", True),
        ("Do it now.", "either", False),  # punctuated as a statement: the ASR is trusted
        ("you went there?", "question_word", False),
        ("you went there?", "either", True),
        ("«¿Qué hiciste hoy?»", "punctuation", True),
        ("", "either", False),
    ],
)
def test_is_question_rules(text, rule, expected):
    assert is_question(text, rule, QW) is expected


def test_is_question_regex_rule():
    assert is_question("Tell me about your day", "regex", regex=r"^tell me\b")
    assert not is_question("I will tell you", "regex", regex=r"^tell me\b")
    with pytest.raises(ValueError, match="regex"):
        is_question("x", "regex")


def test_split_sentences():
    assert split_sentences('He said "go." Then? Yes! ok') == ['He said "go."', "Then?", "Yes!", "ok"]


def _turns():
    return [
        Turn(0, "A", 0.0, 1.0, "Hi."),
        Turn(1, "A", 1.3, 2.0, "What did you do?"),  # same speaker, small gap: same run
        Turn(2, "B", 2.5, 5.0, "I went out."),
        Turn(3, "A", 5.5, 6.0, "Nice."),
        Turn(4, "A", 9.0, 10.0, "Where?"),  # long gap: a new run, then nobody answers
    ]


def test_merge_runs_and_pair_dialogue():
    runs = merge_runs(_turns(), max_gap_s=1.0)
    assert [(r.speaker, r.turn_ids) for r in runs] == [("A", (0, 1)), ("B", (2,)), ("A", (3,)), ("A", (4,))]
    assert runs[0].text == "Hi. What did you do?" and runs[0].start_s == 0.0 and runs[0].end_s == 2.0
    is_q = [is_question(r.text, "either", QW) for r in runs]
    pairs, rej = pair_dialogue(runs, is_q, min_gap_s=-1.0, max_gap_s=3.0)
    assert [(p.question, p.answer) for p in pairs] == [(0, 1)]
    assert rej == [(3, "no_answer")]
    # an answer that starts too late is no answer
    pairs, rej = pair_dialogue(runs, is_q, max_gap_s=0.2)
    assert pairs == [] and rej == [(0, "no_answer"), (3, "no_answer")]


def _words(spec):
    """spec: list of (word, start, end, segment)."""
    return [Word(w, s, e, 0.9, 0, "A", seg) for w, s, e, seg in spec]


def test_sentence_spans_breaks_on_punctuation_segment_and_pause():
    ws = _words([("One", 0, 0.3, 0), ("two.", 0.4, 0.7, 0), ("Three", 0.8, 1.0, 0), ("four", 1.1, 1.3, 1), ("five", 3.5, 3.8, 1), ("six", 3.9, 4.0, 1)])
    assert sentence_spans(ws, max_pause_s=1.5) == [(0, 2), (2, 3), (3, 4), (4, 6)]


def test_pack_segments_bounds():
    # five 2-second sentences with 0.5 s gaps
    ws = []
    t = 0.0
    for k in range(5):
        ws += _words([(f"w{k}a", t, t + 1.0, k), (f"w{k}b.", t + 1.0, t + 2.0, k)])
        t += 2.5
    spans = sentence_spans(ws)
    kept, dropped = pack_segments(ws, spans, min_s=3.0, max_s=7.0)
    assert kept == [(0, 6), (6, 10)]  # 3 sentences = 7.0 s; then 2 sentences = 4.5 s
    assert dropped == []
    kept, dropped = pack_segments(ws, spans, min_s=3.0, max_s=1.5)
    assert kept == [] and dropped == ["too_long"] * 5
    kept, dropped = pack_segments(ws, spans, min_s=5.0, max_s=4.6)
    assert kept == [] and dropped == ["too_short"] * 3  # 4.5 + 4.5 + 2.0 s


def test_head_and_tail_within():
    ws = _words([("a.", 0, 1, 0), ("b.", 1.5, 2.5, 1), ("c.", 3.0, 6.0, 2)])
    spans = sentence_spans(ws)
    assert head_within(ws, spans, 2.6) == (0, 2)
    assert head_within(ws, spans, 0.5) is None
    assert tail_within(ws, spans, 3.1) == (2, 3)
    assert tail_within(ws, spans, 10) == (0, 3)
    assert tail_within(ws, spans, 1.0) is None


def test_overlap_ratio_union():
    assert overlap_ratio(0, 10, [(1, 3), (2, 4), (8, 12), (20, 30)]) == pytest.approx(0.5)
    assert overlap_ratio(0, 10, []) == 0.0
    assert overlap_ratio(5, 5, [(0, 10)]) == 0.0


def test_expected_frames_half_open():
    # clip starts at 0.5 s, 25 fps: frame k at 0.5 + k/25
    np.testing.assert_array_equal(expected_frames(0.5, 25, 0.5, 0.62), [0, 1, 2])
    np.testing.assert_array_equal(expected_frames(0.5, 25, 0.54, 0.62), [1, 2])  # 0.54 is frame 1 exactly
    np.testing.assert_array_equal(expected_frames(0.5, 25, 0.541, 0.581), [2])
    assert expected_frames(0.5, 25, 0.541, 0.58).size == 0  # the end is excluded
    assert expected_frames(0.5, 25, 0.0, 0.5).size == 0


def test_motion_metrics_and_filters():
    exp = np.arange(10, 20)
    fi = np.arange(10, 18)  # two frames at the end missing
    valid = np.ones(8, bool)
    valid[3] = False
    nme = np.full(8, 0.05, np.float32)
    nme[3] = 9.0  # an invalid frame's NME does not count
    vis, mean, mx, gap = motion_metrics(exp, fi, valid, nme)
    assert vis == pytest.approx(0.7) and mean == pytest.approx(0.05) and mx == pytest.approx(0.05) and gap == 2
    f = FilterConfig()
    good = Metrics(5.0, 10, 0.9, 0.0, 0.95, 0.05, 0.07, 0)
    assert reject_reason(good, f) is None
    for change, reason in [
        (dict(duration_s=0.5), "too_short"),
        (dict(duration_s=40.0), "too_long"),
        (dict(n_words=1), "few_words"),
        (dict(asr_prob_mean=float("nan")), "low_asr_prob"),
        (dict(overlap_ratio=0.5), "overlap"),
        (dict(face_visible_ratio=0.5), "face_not_visible"),
        (dict(max_missing_frames=20), "motion_gap"),
        (dict(nme_mean=0.5), "high_nme_mean"),
    ]:
        m = Metrics(**{**good.__dict__, **change})
        assert reject_reason(m, f) == reason, change
