"""The speech stage through the local runner: good and bad audio, uneven batches, resume, refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from flameqa.io import shards as sh
from flameqa.io.schema import conform
from tests.conftest import make_video
from tests.speech.conftest import need_model

SR = 16000


def _clip(cid: str, audio: str | None, start: float = 0.0, end: float = 10.0, status: str = "ok") -> dict:
    return dict(clip_id=cid, video_id=cid.split(".")[0], path=f"/videos/{cid}.mp4", audio_path=audio, start_s=start, end_s=end, fps=25.0,
                width=160, height=120, rotation=0, status=status, error=None if status == "ok" else "decode failed")


@pytest.fixture(scope="module")
def bad_audio(tmp_path_factory, dialogue_wav):
    """Files for every kind of trouble, plus the dialogue resampled to 8 kHz and to 48 kHz stereo."""
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    x, _ = sf.read(str(dialogue_wav[0]), dtype="float32")
    f = {}
    f["silence"] = d / "silence.wav"
    sf.write(str(f["silence"]), np.zeros(SR * 5, np.float32), SR)
    f["noise"] = d / "noise.wav"
    sf.write(str(f["noise"]), (0.3 * rng.standard_normal(SR * 5)).astype(np.float32), SR)
    f["clipped"] = d / "clipped.wav"
    sf.write(str(f["clipped"]), np.clip(x * 20, -1, 1), SR)
    from scipy.signal import resample_poly

    f["8k"] = d / "dlg8k.wav"
    sf.write(str(f["8k"]), resample_poly(x, 1, 2).astype(np.float32), 8000)
    f["48k"] = d / "dlg48k.wav"
    y = resample_poly(x, 3, 1).astype(np.float32)
    sf.write(str(f["48k"]), np.stack([y, y], 1), 48000)
    f["video_no_audio"] = make_video(d / "noaudio.mp4", seconds=1.0, audio=False)
    return f


def test_stage_through_runner(tmp_path, dialogue_wav, bad_audio):
    need_model("whisper-tiny.en")
    from flameqa.config import load_config
    from flameqa.runner import run_pipeline

    dlg, truth = dialogue_wav
    out = tmp_path / "run"
    # shard 0: 3 clips, shard 1: 6 clips; batch_groups=2 splits them unevenly
    shard0 = [_clip("dlg.c000", str(dlg), 0.0, 12.3), _clip("dlg.c001", str(dlg), 12.3, 30.0), _clip("noaud.c000", None, 0, 3)]
    shard1 = [
        _clip("sil.c000", str(bad_audio["silence"]), 0, 5),
        _clip("noise.c000", str(bad_audio["noise"]), 0, 5),
        _clip("clip.c000", str(bad_audio["clipped"]), 0, 12.3),
        _clip("d8k.c000", str(bad_audio["8k"]), 0, 12.3),
        _clip("d48.c000", str(bad_audio["48k"]), 0, 12.3),
        _clip("vna.c000", str(bad_audio["video_no_audio"]), 0, 1),
        _clip("gone.c000", str(tmp_path / "missing.wav"), 0, 1),
        _clip("bad.c000", str(dlg), 0, 5, status="failed"),
    ]
    for i, rows in enumerate([shard0, shard1]):
        sh.write_shard(out, "clips", i, conform("clips", rows))
        sh.write_marker(out, "clips", i, {"stage": "ingest", "table": "clips", "shard": i, "rows": len(rows), "config_hash": "test"})
    cfg = load_config(None, ["runner.batch_groups=2"])
    rep = run_pipeline(cfg, out, stages=["speech"], show_progress=False)
    assert rep.ok, [s.error for st in rep.stages for s in st.shards]

    speech = sh.read_table(out, "speech").to_pylist()
    words = sh.read_table(out, "words").to_pylist()
    by = {}
    for r in speech:
        by.setdefault(r["clip_id"], []).append(r)
    status = {c: rows[0]["status"] for c, rows in by.items()}
    assert status == {
        "dlg.c000": "ok", "dlg.c001": "ok", "noaud.c000": "no_audio", "sil.c000": "no_speech", "noise.c000": "no_speech",
        "clip.c000": "ok", "d8k.c000": "ok", "d48.c000": "ok", "vna.c000": "no_audio", "gone.c000": "failed", "bad.c000": "skipped",
    }
    for c in ("noaud.c000", "sil.c000", "noise.c000", "vna.c000", "gone.c000", "bad.c000"):
        (row,) = by[c]
        assert row["turn_id"] == -1 and row["error"], row
    assert "no audio stream" in by["vna.c000"][0]["error"] and "missing.wav" in by["gone.c000"][0]["error"]
    assert "clipped" in by["clip.c000"][0]["flags"]
    assert "resampled_from_8000hz" in by["d8k.c000"][0]["flags"]
    assert {"resampled_from_48000hz", "downmixed_2ch"} <= set(by["d48.c000"][0]["flags"])

    # the first clip (0-12.3 s) holds the first 3 turns; times are seconds from the video start
    turns = by["dlg.c000"]
    assert [t["turn_id"] for t in turns] == list(range(len(turns))) and len(turns) == 3
    assert turns[0]["speaker"] == turns[2]["speaker"] != turns[1]["speaker"]
    assert abs(turns[1]["start_s"] - truth[1].start_s) < 0.35
    assert all(len(t["embedding"]) == 256 for t in turns)
    second = by["dlg.c001"]
    assert all(t["start_s"] >= 12.3 - 1e-6 and t["end_s"] <= 30.0 for t in second)
    w = [x for x in words if x["clip_id"] == "dlg.c000"]
    assert [x["word_idx"] for x in w] == list(range(len(w)))
    assert all(x["turn_id"] is not None and x["speaker"] == turns[x["turn_id"]]["speaker"] for x in w)
    assert "mountains" in " ".join(x["word"] for x in w) and any(x["segment_text"].endswith("?") for x in w)
    from flameqa.speech.eval import wer

    ref = " ".join(k.text for k in truth[:3])
    for c in ("d8k.c000", "d48.c000", "clip.c000"):  # degraded copies of the same speech still read
        assert wer([ref], [" ".join(x["word"] for x in words if x["clip_id"] == c)]) <= 0.35, c

    marker = sh.read_marker(out, "speech", 1)
    assert marker["status_counts"]["no_speech"] == 2 and marker["extra"]["compute_type"] == "int8"

    # rerun: both shards complete with the same config → skipped; a config change redoes them
    rep2 = run_pipeline(cfg, out, stages=["speech"], show_progress=False)
    assert all(s.skipped for s in rep2.stages[0].shards) and len(rep2.stages[0].shards) == 2
    sh.clear_shard(out, "words", 1)
    rep3 = run_pipeline(cfg, out, stages=["speech"], show_progress=False)
    assert [s.skipped for s in rep3.stages[0].shards] == [True, False]
    assert sh.read_table(out, "speech").num_rows == len(speech)


def test_batch_split_invariance(tmp_path, tiny_pipeline, dialogue_wav, bad_audio):
    from flameqa.speech.stage import SpeechStage
    from flameqa.stages.base import StageContext

    stage = SpeechStage.__new__(SpeechStage)  # reuse the session's loaded models
    stage.config, stage.ctx, stage.pipeline = tiny_pipeline.config, StageContext(out=tmp_path), tiny_pipeline
    stage._status, stage._seconds, stage._audio_s = __import__("collections").Counter(), __import__("collections").Counter(), 0.0
    rows = [_clip("a.c0", str(dialogue_wav[0]), 0, 9.2), _clip("s.c0", str(bad_audio["silence"]), 0, 5), _clip("n.c0", None)]
    batch = conform("clips", rows)
    whole = stage(batch, {})
    parts = [stage(batch.slice(i, 1), {}) for i in range(3)]
    for t in ("speech", "words"):
        assert pa.concat_tables([p[t] for p in parts]).equals(whole[t])


def test_whisperx_refuses_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "whisperx", None)  # as where it is not installed
    from flameqa.speech.asr import BackendUnavailable, WhisperXAsr

    with pytest.raises(BackendUnavailable, match="needs the `whisperx` package.*torch"):
        WhisperXAsr("whisper-tiny.en")


def test_pyannote_refuses_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)
    from flameqa.speech.asr import BackendUnavailable
    from flameqa.speech.diarize import PyannoteDiarizer

    with pytest.raises(BackendUnavailable, match="pyannote.audio.*PYANNOTE_METRICS_ENABLED=0"):
        PyannoteDiarizer()


def test_whisperx_adapter_against_its_api(monkeypatch):
    """The adapter's calls, in the order and shape of the whisperx API (a stand-in module records them)."""
    import types

    calls = []
    wx = types.ModuleType("whisperx")

    class Model:
        def transcribe(self, audio, batch_size, language):
            calls.append(("transcribe", audio.dtype.name, batch_size, language))
            return {"segments": [{"text": " Hi there.", "start": 0.1, "end": 0.9}], "language": "en"}

    def load_model(arch, device, compute_type, asr_options, language, vad_method, local_files_only, threads):
        calls.append(("load_model", device, compute_type, asr_options["beam_size"], vad_method, local_files_only))
        return Model()

    def load_align_model(language_code, device, model_name=None):
        calls.append(("load_align_model", language_code, device))
        return object(), {"language": language_code}

    def align(segments, model, metadata, audio, device, return_char_alignments=False):
        calls.append(("align", len(segments), return_char_alignments))
        return {"segments": [{"text": " Hi there.", "start": 0.1, "end": 0.9, "words": [{"word": "Hi", "start": 0.1, "end": 0.3, "score": 0.9}, {"word": "there.", "start": 0.4, "end": 0.9, "score": 0.8}]}]}

    wx.load_model, wx.load_align_model, wx.align = load_model, load_align_model, align
    monkeypatch.setitem(sys.modules, "whisperx", wx)
    from flameqa.speech.asr import WhisperXAsr

    need_model("whisper-tiny.en")
    asr = WhisperXAsr("whisper-tiny.en")
    segs = asr.transcribe(np.zeros(SR, np.float32), [(0.0, 1.0)])
    assert [w.word for w in segs[0].words] == ["Hi", "there."] and segs[0].text == "Hi there."
    assert [c[0] for c in calls] == ["load_model", "transcribe", "load_align_model", "align"]
    assert calls[0][1:] == ("cpu", "int8", 5, "pyannote", True)
    assert asr.transcribe(np.zeros(SR, np.float32), []) == []  # no speech: whisperx is not called


def test_pyannote_adapter_turns(monkeypatch):
    import types

    from pyannote.core import Annotation, Segment

    seen = {}

    class Pipe:
        def to(self, device):
            seen["device"] = str(device)

        def __call__(self, data, **kw):
            seen["keys"], seen["kw"] = sorted(data), kw
            ann = Annotation()
            ann[Segment(0.0, 2.0)] = "A"
            ann[Segment(1.5, 3.0)] = "B"
            return types.SimpleNamespace(speaker_diarization=ann)  # pyannote.audio 4 output

    mod = types.ModuleType("pyannote.audio")
    mod.Pipeline = types.SimpleNamespace(from_pretrained=lambda src, token=None: Pipe())
    monkeypatch.setitem(sys.modules, "pyannote.audio", mod)
    from flameqa.speech.diarize import PyannoteDiarizer

    turns = PyannoteDiarizer().diarize(np.zeros(3 * SR, np.float32), offset_s=10.0, num_speakers=2)
    assert seen["keys"] == ["sample_rate", "waveform"] and seen["kw"] == {"num_speakers": 2}
    assert [(t.speaker, t.start_s, t.end_s, t.overlap) for t in turns] == [("SPK0", 10.0, 12.0, True), ("SPK1", 11.5, 13.0, True)]


def test_import_stays_light():
    code = "import sys, flameqa, flameqa.speech.stage, flameqa.speech.config, flameqa.cli; bad = [m for m in ('torch', 'faster_whisper', 'silero_vad', 'resemblyzer', 'librosa') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_adjacent_shots_are_transcribed_as_one_recording(tmp_path, tiny_pipeline, dialogue_wav):
    """A video cut into shots gives the words of the uncut recording, each in the shot holding it,
    with speaker labels shared across the cuts; span_shots=False transcribes every shot alone."""
    from flameqa.speech.stage import SpeechStage, shot_runs
    from flameqa.stages.base import StageContext

    dlg, truth = dialogue_wav
    end = truth[-1].end_s + 0.5
    cuts = [0.0, truth[1].start_s + 0.8, truth[3].start_s + 0.5, end]  # cuts inside the 2nd and 4th turns
    shots = [_clip(f"dlg.c{i:03d}", str(dlg), a, b) for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]
    assert shot_runs(list(reversed(shots))) == [[2, 1, 0]]  # adjacent, sorted by time
    assert shot_runs([shots[0], shots[2]]) == [[0], [1]]  # a gap ends the run

    def stage_for(span: bool) -> SpeechStage:
        stage = SpeechStage.__new__(SpeechStage)  # reuse the session's loaded models
        stage.config = tiny_pipeline.config.model_copy(update={"span_shots": span})
        stage.ctx, stage.pipeline = StageContext(out=tmp_path), tiny_pipeline
        stage._status, stage._seconds, stage._audio_s = __import__("collections").Counter(), __import__("collections").Counter(), 0.0
        return stage

    whole = tiny_pipeline.process(dlg, 0.0, end)
    stage = stage_for(True)
    assert stage.group_key == "video_id"
    out = stage(conform("clips", shots), {})
    words = out["words"].to_pylist()
    assert [w["word"] for w in words] == [w.word.word for w in whole.words]
    for w in words:  # every word lies (by its midpoint) in its shot
        (shot,) = [s for s in shots if s["clip_id"] == w["clip_id"]]
        assert shot["start_s"] - 1e-6 <= (w["start_s"] + w["end_s"]) / 2 <= shot["end_s"] + 1e-6
    speech = out["speech"].to_pylist()
    assert {r["clip_id"] for r in speech} == {s["clip_id"] for s in shots} and all(r["status"] == "ok" for r in speech)
    for s in shots:  # turns are cut at the shots' bounds and numbered per shot
        rows = [r for r in speech if r["clip_id"] == s["clip_id"]]
        assert [r["turn_id"] for r in rows] == list(range(len(rows)))
        assert all(s["start_s"] - 1e-3 <= r["start_s"] < r["end_s"] <= s["end_s"] + 1e-3 for r in rows)  # times rounded to ms
    # the 2nd turn runs across the first cut: same speaker on both sides, one label per voice
    first_cut = cuts[1]
    across = [r for r in speech if abs(r["end_s"] - first_cut) < 1e-3 or abs(r["start_s"] - first_cut) < 1e-3]
    assert len(across) == 2 and across[0]["speaker"] == across[1]["speaker"]
    assert len({r["speaker"] for r in speech}) == 2

    alone = stage_for(False)
    assert alone.group_key == "clip_id"
    per_shot = alone(conform("clips", shots), {})["speech"].to_pylist()
    assert {r["clip_id"] for r in per_shot} == {s["clip_id"] for s in shots}


def test_whisper_sampling_is_seeded(tmp_path):
    """Forced to sample (temperature 1, what Whisper falls back to), two fresh processes write the
    same words: the model seeds CTranslate2 when it loads (speech.asr.seed)."""
    import subprocess
    import sys

    from .conftest import need_data, need_model

    need_model("whisper-tiny.en")
    wav = need_data("speech", "jfk_16k.wav")
    code = (
        "import sys; from flameqa.speech.config import SpeechConfig; from flameqa.speech.pipeline import SpeechPipeline; "
        "from flameqa.speech.audio import read_audio; asr = SpeechPipeline(SpeechConfig(asr={'temperature': [1.0]})).asr; "
        "print(' '.join(w.word for s in asr.transcribe(read_audio(sys.argv[1])) for w in s.words))"
    )
    runs = [subprocess.run([sys.executable, "-c", code, str(wav)], capture_output=True, text=True, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert runs[0].stdout.strip() and runs[0].stdout == runs[1].stdout


def test_whisper_sampling_does_not_depend_on_history():
    """A transcription that sampled leaves CTranslate2's generators advanced; the model is reloaded
    before the next one, so a recording's words are the same whatever the process transcribed
    before (a resumed run, another worker count). Unseeded, nothing is reloaded."""
    from flameqa.speech.asr import FasterWhisperAsr
    from flameqa.speech.audio import read_audio
    from flameqa.speech.config import AsrConfig

    from .conftest import need_data, need_model

    need_model("whisper-tiny.en")
    jfk, go = (read_audio(need_data("speech", f)) for f in ("jfk_16k.wav", "goforward.wav"))
    asr = FasterWhisperAsr("whisper-tiny.en", AsrConfig(temperature=(1.0,)))

    def words(a):
        return " ".join(w.word for s in asr.transcribe(a) for w in s.words)

    first = words(jfk)
    words(go)
    assert first and words(jfk) == first
    assert asr.reloads == 2
    beam = FasterWhisperAsr("whisper-tiny.en", AsrConfig(temperature=(0.0,)))
    beam.transcribe(jfk)
    beam.transcribe(jfk)
    assert beam.reloads == 0  # beam search draws no random numbers
    loose = FasterWhisperAsr("whisper-tiny.en", AsrConfig(temperature=(1.0,), seed=None))
    loose.transcribe(jfk)
    loose.transcribe(jfk)
    assert loose.reloads == 0
