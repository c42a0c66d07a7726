"""Samples → aligned features/targets, identity splits, deterministic windows, streaming resume."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from flameqa.train.config import DataConfig, TrainConfig, TrainConfigError, load_train_config
from flameqa.train.data import (
    NormStats,
    StreamingWindows,
    WindowBatchSampler,
    iter_rows,
    load_sequences,
    make_featurizer,
    mel_filterbank,
    sequence_from_row,
    split_identities,
)


def _wav_bytes(x: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def _row(T=40, offset=0.02, burst=(0.42, 0.46), fps=25.0, identity="a", sid="s0", sr=16000):
    audio = np.zeros(int(2.0 * sr), np.float32)
    a, b = int(burst[0] * sr), int(burst[1] * sr)
    audio[a:b] = 0.5 * np.sin(2 * np.pi * 300 * np.arange(b - a) / sr)
    rng = np.random.default_rng(0)
    return {
        "sample_id": sid, "identity": identity, "fps": fps, "answer_audio": {"bytes": _wav_bytes(audio, sr), "path": None},
        "expression": rng.normal(size=(T, 100)).astype(np.float32), "jaw": rng.normal(size=(T, 3)).astype(np.float32),
        "neck": np.zeros((T, 3), np.float32), "valid": np.ones(T, bool), "question_text": "Why?", "shape": np.zeros(5, np.float32),
        "motion_offset_s": offset, "model_id": "flameqa-demo-head",
    }  # fmt: skip


def test_features_are_aligned_to_motion_frames_and_causal():
    cfg = DataConfig(n_expr=10)
    seq = sequence_from_row(_row(), cfg, make_featurizer(cfg))
    # the burst is at 0.42-0.46 s of the answer audio; motion frame 0 is at 0.02 s → frame 10 = [0.40, 0.44)
    assert int(np.argmax(seq.energy)) == 10
    assert seq.feats.shape == (80, cfg.n_mels) and seq.motion.shape == (40, 16)
    loud = seq.feats.max(1)
    # log-mel frame j (50 per second) ends at (j + 1) / 50 s after motion frame 0 and looks 40 ms back:
    # frames ending at or before 0.40 s have not heard the burst; frame 20 (ends 0.42 s) has
    assert loud[:20].max() < loud[20] - 5
    assert seq.text.dtype == np.int64 and len(seq.text) == 1


def test_mel_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmin in [(16000, 1024, 40, 20.0), (16000, 512, 80, 0.0)]:
        np.testing.assert_allclose(mel_filterbank(sr, n_fft, n_mels, fmin), librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin), atol=1e-7)


def test_bad_samples_are_reported_not_fatal():
    cfg = DataConfig(n_expr=10)
    rows = [
        _row(sid="ok"), _row(sid="fps", fps=30.0), {**_row(sid="noaudio"), "answer_audio": None}, _row(sid="short", T=3),
        {**_row(sid="nojaw"), "jaw": None}, {**_row(sid="badwav"), "answer_audio": {"bytes": b"RIFF0000junk", "path": None}},
        {**_row(sid="badjaw"), "jaw": np.zeros((5, 3))},
    ]  # fmt: skip
    seqs, skipped = load_sequences("unused", cfg, rows=rows)
    assert [s.sample_id for s in seqs] == ["ok"]
    errs = {s["sample_id"]: s["error"] for s in skipped}
    assert "fps 30.0" in errs["fps"] and "null" in errs["noaudio"] and "min_frames" in errs["short"]
    assert "jaw is null" in errs["nojaw"] and "not readable audio" in errs["badwav"] and "badjaw" in errs


def test_identity_split_and_per_identity_stats():
    cfg = DataConfig(val_fraction=0.25)
    ids = [f"id{i}" for i in range(8)]
    tr, va = split_identities(ids, cfg, seed=0)
    assert len(va) == 2 and not set(tr) & set(va) and sorted(tr + va) == ids
    assert split_identities(reversed(ids), cfg, seed=0) == (tr, va)
    assert split_identities(ids, cfg.model_copy(update={"val_identities": ("id3",)}), seed=0)[1] == ["id3"]
    assert split_identities(["only"], cfg, seed=0) == (["only"], [])

    c = DataConfig(n_expr=10)
    f = make_featurizer(c)
    a = sequence_from_row(_row(identity="a", sid="a"), c, f)
    b = sequence_from_row(_row(identity="b", sid="b"), c, f)
    b.motion = b.motion * 3 + 1
    st = NormStats.fit([a, b])
    ma, sa = st.for_identity("a")
    np.testing.assert_allclose(ma, a.motion.mean(0), atol=1e-5)
    mb, sb = st.for_identity("b")
    np.testing.assert_allclose(sb, np.maximum(b.motion.std(0), 0.1 * st.global_std), rtol=1e-4)
    assert st.for_identity("stranger")[0] is st.global_mean
    assert NormStats.from_state(st.to_state()).identities == ["a", "b"]


def test_window_batches_depend_only_on_seed_and_step():
    lengths = [30, 200, 75]
    s1 = WindowBatchSampler(lengths, 50, 8, seed=1)
    first = [b for _, b in zip(range(5), s1)]
    s2 = WindowBatchSampler(lengths, 50, 8, seed=1, start=3)
    assert next(iter(s2)) == first[3]
    assert s1.state_dict() == {"next_batch": 5}
    assert WindowBatchSampler(lengths, 50, 8, seed=2).batch(0) != first[0]
    for i, start in (p for b in first for p in b):
        assert 0 <= start <= max(lengths[i] - 50, 0)


def test_streaming_matches_in_memory_and_resumes_at_a_window(synth_dir):
    cfg = TrainConfig().data.model_copy(update={"max_samples": 8, "window_frames": 40, "shuffle_buffer": 4})
    mem, _ = load_sequences(synth_dir, cfg)
    stream, _ = load_sequences(synth_dir, cfg.model_copy(update={"streaming": True}))
    assert [s.sample_id for s in mem] == [s.sample_id for s in stream]
    np.testing.assert_array_equal(mem[3].feats, stream[3].feats)

    stats = NormStats.fit(mem)
    feat = make_featurizer(cfg)
    ids = {s.identity for s in mem}

    def rows():
        for n, r in enumerate(iter_rows(synth_dir, None, streaming=True)):
            if n >= 8:
                return
            yield r

    def windows(skip, n):
        it = iter(StreamingWindows(rows, cfg, stats, feat, seed=0, keep=lambda r: r["identity"] in ids, skip=skip))
        return [next(it) for _ in range(n)]

    full = windows(0, 9)
    assert len({w["feats"].tobytes() for w in full}) == 9
    for a, b in zip(windows(4, 5), full[4:]):
        np.testing.assert_array_equal(a["motion"], b["motion"])
        np.testing.assert_array_equal(a["feats"], b["feats"])


def test_config_presets_and_errors(tmp_path):
    gpu = load_train_config(None, ["preset=gpu"])
    assert gpu.model.arch == "tcn_gru" and gpu.train.precision == "bf16" and gpu.data.n_expr == 100
    assert load_train_config(None, ["preset=gpu", "model.hidden=32"]).model.hidden == 32
    assert load_train_config(Path(__file__).resolve().parents[2] / "pipelines" / "train.yaml").preset == "cpu"
    p = tmp_path / "t.yaml"
    p.write_text("model:\n  hiden: 3\n")
    with pytest.raises(TrainConfigError, match="model.hiden"):
        load_train_config(p)
    with pytest.raises(TrainConfigError, match="n_expr"):
        load_train_config(None, ["data.n_expr=101"])
    with pytest.raises(TrainConfigError, match="preset"):
        load_train_config(None, ["preset=tpu"])


def test_exported_folder_and_its_identity_split_as_validation(synth_dir):
    from flameqa.train.loop import prepare_data

    assert (synth_dir / "README.md").is_file() and sorted(p.name.split("-")[0] for p in (synth_dir / "data").glob("*.parquet")) == ["test", "train"]
    rows = list(iter_rows(synth_dir))
    test_ids = {r["identity"] for r in rows if r["_split"] == "test"}
    assert len(rows) == 36 and test_ids
    cfg = TrainConfig().model_copy(update={"data": TrainConfig().data.model_copy(update={"val_split": "test"})})
    td = prepare_data(synth_dir, cfg)
    assert set(td.val_identities) == test_ids and not test_ids & set(td.train_identities)
    assert {s.split for s in td.val} == {"test"} and {s.split for s in td.train} == {"train"}
