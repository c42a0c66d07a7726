"""Pure parts of the speech stage: windows, clustering, turn building, word assignment (no models)."""

from __future__ import annotations

import numpy as np

from flameqa.speech.asr import Word, _ChunkMap, plan_windows, whisperx_segments
from flameqa.speech.config import DiarizationConfig
from flameqa.speech.diarize import Turn, build_turns, cluster_speakers, embedding_windows, labelled_segments, name_speakers, viterbi_labels
from flameqa.speech.pipeline import WordRow, assign_words
from flameqa.speech.vad import merge_spans


def test_plan_windows_cut_in_silence():
    speech = [(i * 10.0, i * 10.0 + 6.0) for i in range(30)]  # 300 s, 6 s of speech every 10 s
    wins = plan_windows(speech, window_s=60.0, start_s=0.0, end_s=300.0)
    assert sum(len(sp) for _, _, sp in wins) == 30
    for w0, w1, sp in wins:
        assert w1 - w0 <= 60.0 + 2.0  # widened by ≤ 1 s each side into the silence
        assert all(w0 <= s and e <= w1 for s, e in sp)
    # one span longer than the window gets a window of its own
    assert len(plan_windows([(0.0, 100.0)], 60.0, 0.0, 100.0)) == 1


def test_plan_windows_keep_the_clip_edges_silence():
    # nobody shares the silence before the first / after the last window: it is kept whole (≤ margin)
    assert plan_windows([(0.9, 2.2)], 300.0, 0.0, 2.95) == [(0.0, 2.95, [(0.9, 2.2)])]
    assert plan_windows([(3.0, 4.0)], 300.0, 0.0, 10.0, margin_s=1.0) == [(2.0, 5.0, [(3.0, 4.0)])]
    # between two windows each takes half the gap
    (a0, a1, _), (b0, b1, _) = plan_windows([(1.0, 2.0), (3.0, 4.0)], 1.5, 0.0, 5.0)
    assert (a0, a1, b0, b1) == (0.0, 2.5, 2.5, 5.0)


def test_chunk_map_back_to_original_times():
    m = _ChunkMap([(1.0, 3.0), (10.0, 11.0)])
    assert m.to_orig(0.5, m.index(0.5)) == 1.5
    assert m.to_orig(2.5, m.index(2.5)) == 10.5


def test_merge_spans():
    assert merge_spans([(1.0, 2.0), (2.5, 3.0), (6.0, 7.0)], gap_s=1.0, pad_s=0.2, lo=0.0, hi=6.5) == [(0.8, 3.2), (5.8, 6.5)]


def test_embedding_windows_cover_spans():
    wins = embedding_windows([(0.0, 0.6), (2.0, 5.0)], win_s=1.0, hop_s=0.25)
    assert wins[0].span == 0 and wins[0].end_s - wins[0].start_s == 1.0
    w1 = [w for w in wins if w.span == 1]
    assert w1[0].lo == 2.0 and w1[-1].hi == 5.0
    assert all(a.hi == b.lo for a, b in zip(w1, w1[1:]))  # contiguous responsibility, no holes


def _blobs(rng, centres, n):
    return np.concatenate([c + 0.05 * rng.standard_normal((n, len(c))) for c in centres]).astype(np.float32)


def test_cluster_counts_speakers():
    rng = np.random.default_rng(0)
    a, b = np.abs(rng.standard_normal(256)), np.abs(rng.standard_normal(256))
    cfg = DiarizationConfig()
    two = cluster_speakers(_blobs(rng, [a, b], 20), None, cfg)
    assert len(set(two[:20])) == 1 and len(set(two[20:])) == 1 and two[0] != two[20]
    one = cluster_speakers(_blobs(rng, [a], 40), None, cfg)
    assert set(one) == {0}
    assert set(cluster_speakers(_blobs(rng, [a], 40), 2, cfg)) == {0, 1}  # given count is obeyed


def test_viterbi_removes_isolated_flip():
    sim = np.array([[1, 0], [1, 0], [0.45, 0.55], [1, 0], [0, 1], [0, 1], [0, 1]], float)
    assert viterbi_labels(sim, np.full(7, 0.3)).tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_turns_join_pauses_and_keep_interjections_as_overlap():
    cfg = DiarizationConfig(merge_gap_s=1.0, max_interjection_s=1.0, min_turn_s=0.2)
    segs = [(0, 0.0, 3.0), (0, 3.5, 5.0), (1, 5.0, 5.6), (0, 5.6, 8.0), (1, 9.5, 12.0), (0, 12.0, 12.1)]
    turns = name_speakers(build_turns(segs, cfg))
    got = [(t.speaker, t.start_s, t.end_s, t.overlap) for t in turns]
    # A: 0-8 (pause joined, backchannel bridged), B's "yeah" 5.0-5.6 inside it, B again 9.5-12.1 (blip absorbed)
    assert got == [("SPK0", 0.0, 8.0, True), ("SPK1", 5.0, 5.6, True), ("SPK1", 9.5, 12.1, False)]


def test_labelled_segments_follow_windows():
    wins = embedding_windows([(0.0, 4.0)], 1.0, 0.5)
    labels = np.array([0] * 3 + [1] * (len(wins) - 3))
    segs = labelled_segments(wins, labels)
    assert [s[0] for s in segs] == [0, 1] and segs[0][1] == 0.0 and segs[-1][2] == 4.0 and segs[0][2] == segs[1][1]


def test_words_prefer_the_turn_that_speaks_them():
    turns = [Turn("SPK0", 0.0, 8.0, True, core=[(0.0, 5.0), (5.6, 8.0)]), Turn("SPK1", 5.0, 5.6, True, core=[(5.0, 5.6)])]
    words = [WordRow(Word("so", 1.0, 1.3, 0.9), 0), WordRow(Word("yeah", 5.1, 5.4, 0.9), 1), WordRow(Word("then", 8.3, 8.6, 0.9), 2), WordRow(Word("far", 20.0, 20.2, 0.9), 3)]
    assign_words(words, turns)
    assert [(w.turn_id, w.speaker) for w in words] == [(0, "SPK0"), (1, "SPK1"), (0, "SPK0"), (None, None)]


def test_whisperx_segments_fill_unaligned_words():
    segs = whisperx_segments(
        [{"text": " Set white with P2 soon.", "start": 0.5, "end": 2.0, "words": [
            {"word": "Set", "start": 0.5, "end": 0.7, "score": 0.9},
            {"word": "P2"},  # digits: wav2vec2 has no characters for them, so no times
            {"word": "soon.", "start": 1.5, "end": 2.0, "score": 0.8},
        ]}]
    )
    (s,) = segs
    assert s.text == "Set white with P2 soon." and [w.word for w in s.words] == ["Set", "P2", "soon."]
    assert s.words[1].start_s == 0.7 and s.words[1].end_s == 1.5
