"""Ingest through the local runner: real GRID clips, synthetic clips, and every bad input of issue 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from flameqa.config import load_config
from flameqa.inspect import summarize
from flameqa.io.media import iter_frames, probe, read_wav
from flameqa.io.shards import read_table
from flameqa.runner import run_pipeline
from tests.conftest import GRID, make_video, need_shared


def ingest(out, inputs, **over):
    cfg = load_config(None, [f"ingest.{k}={v}" for k, v in over.items()])
    rep = run_pipeline(cfg, out, inputs=inputs, stages=["ingest"], show_progress=False)
    assert rep.ok, [r.error for s in rep.stages for r in s.shards]
    return read_table(out, "videos").to_pylist(), read_table(out, "clips").to_pylist()


def test_grid_clips_real(tmp_path):
    need_shared("face_video", "grid")
    videos, clips = ingest(tmp_path / "out", str(GRID), videos_per_shard=2)
    assert len(videos) == 5 and all(v["status"] == "ok" for v in videos)
    for v in videos:
        assert v["fps"] == 25 and (v["width"], v["height"]) == (360, 288)
        assert abs(v["duration_s"] - 3.0) < 0.1 and v["has_audio"]
        x, sr = read_wav(v["audio_path"])
        assert sr == 16000 and abs(len(x) / sr - 3.0) < 0.1 and np.abs(x).max() > 0.01
    assert len(clips) == 5  # one shot each
    assert {c["video_id"] for c in clips} == {v["video_id"] for v in videos}
    # 3 shards of ≤ 2 videos, each with a marker written last
    assert sorted(p.name for p in (tmp_path / "out" / "videos").glob("part-*.parquet")) == [f"part-0000{i}.parquet" for i in range(3)]


def test_shot_cut_and_clip_times(tmp_path, video_factory):
    v = video_factory("cut.mp4", seconds=3.0, cut_at=1.6)
    _, clips = ingest(tmp_path / "out", str(v))
    assert [(round(c["start_s"], 2), round(c["end_s"], 2)) for c in clips] == [(0.0, 1.6), (1.6, 3.0)]


def test_bad_inputs_each_become_rows(tmp_path, video_factory):
    good = video_factory("good clip ü.mp4", seconds=1.5)
    truncated = tmp_path / "trunc.mp4"
    data = video_factory("full.mp4", seconds=2.0).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01garbage" * 500)
    empty = tmp_path / "zero.mp4"
    empty.write_bytes(b"")
    audio_only = tmp_path / "audio.m4a"
    import av

    with av.open(str(audio_only), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        fr.sample_rate = 16000
        for p in s.encode(fr):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    video_only = video_factory("silent_film.mp4", seconds=1.2, audio=False)
    vfr = video_factory("vfr.mp4", frame_times=[0, 0.04, 0.08, 0.3, 0.34, 0.7, 0.72, 1.1, 1.2, 1.24])
    rotated = video_factory("phone.mp4", seconds=1.2, rotation=90, size=(96, 64))
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"uri": str(good), "video_id": "good", "license": "CC-BY-4.0"},
        {"uri": str(tmp_path / "missing.mp4")},
        {"uri": str(corrupt)},
        {"uri": str(truncated)},
        {"uri": str(empty)},
        {"uri": str(audio_only)},
        {"uri": str(video_only)},
        {"uri": str(vfr)},
        {"uri": str(rotated)},
        {"uri": str(good), "video_id": "good_again"},
        {"video_id": "no_uri"},
        {"uri": str(good), "video_id": "../../etc/passwd"},
        {"uri": str(good), "video_id": "x; rm -rf $HOME"},
        {"uri": "http://example.com/v.mp4"},
        {"uri": str(good), "video_id": "good"},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    out = tmp_path / "out"
    videos, clips = ingest(out, str(manifest), videos_per_shard=4)
    assert len(videos) == len(rows) + 1  # every row, plus the unparseable line: nothing lost
    by_uri = {}
    for v in videos:
        by_uri.setdefault(v["uri"], []).append(v)

    def one(path):
        (v,) = by_uri[str(path)] if len(by_uri[str(path)]) == 1 else [x for x in by_uri[str(path)] if x["video_id"] == "good"]
        return v

    assert one(good)["status"] == "ok" and one(good)["license"] == "CC-BY-4.0"
    assert "not found" in by_uri[str(tmp_path / "missing.mp4")][0]["error"]
    assert by_uri[str(corrupt)][0]["status"] == "failed" and by_uri[str(corrupt)][0]["error"]
    assert by_uri[str(empty)][0]["status"] == "failed" and "zero-byte" in by_uri[str(empty)][0]["error"]
    assert "audio-only" in by_uri[str(audio_only)][0]["error"]
    vo = by_uri[str(video_only)][0]
    assert vo["status"] == "ok" and "no_audio" in vo["flags"] and vo["audio_path"] is None
    vv = by_uri[str(vfr)][0]
    assert vv["status"] == "ok" and vv["vfr"] and "vfr" in vv["flags"]
    rv = by_uri[str(rotated)][0]
    assert rv["status"] == "ok" and rv["rotation"] == 90 and (rv["width"], rv["height"]) == (64, 96)
    tr = by_uri[str(truncated)][0]
    assert tr["status"] == "failed" or "truncated" in tr["flags"] or tr["duration_s"] < 2.0
    dup = [v for v in by_uri[str(good)] if v["video_id"] == "good_again"][0]
    assert dup["status"] == "duplicate" and "good" in dup["error"]
    no_uri = [v for v in videos if v["uri"] == ""]
    assert any("no 'uri'" in (v["error"] or "") for v in no_uri)
    assert any("not JSON" in (v["error"] or "") for v in no_uri)
    bad_ids = [v for v in videos if v["error"] and "invalid video_id" in v["error"]]
    assert len(bad_ids) == 2 and all("/" not in v["video_id"] and ";" not in v["video_id"] for v in bad_ids)
    assert any("scheme 'http'" in (v["error"] or "") for v in videos)
    assert any("duplicate video_id" in (v["error"] or "") for v in videos)
    # ids are unique, and no output file escaped OUT
    assert len({v["video_id"] for v in videos}) == len(videos)
    assert all(str(out.resolve()) in str((out / "media" / "audio").resolve() / "x") for _ in [0])
    assert not list(tmp_path.parent.glob("etc"))
    # frames of the rotated video come out upright (portrait)
    frame = next(iter_frames(rotated, rotation=90))[2]
    assert frame.shape == (96, 64, 3)
    # the VFR video is delivered at a constant 25 fps covering its duration
    fr = list(iter_frames(vfr, fps=25))
    assert np.allclose(np.diff([f[1] for f in fr]), 0.04, atol=1e-6) and abs(fr[-1][1] - 1.24) < 0.05
    s = summarize(out)
    assert s["videos"]["status"]["ok"] >= 4 and s["videos"]["status"]["failed"] >= 8
    assert s["videos"]["errors"]


def test_audio_resampled_to_16k_mono(tmp_path, video_factory):
    v = video_factory("st.mp4", seconds=1.0, sample_rate=48000, channels=2)
    videos, _ = ingest(tmp_path / "out", str(v))
    x, sr = read_wav(videos[0]["audio_path"])
    assert sr == 16000 and abs(len(x) - 16000) < 1600
    # 220 Hz tone survives the resampling
    spec = np.abs(np.fft.rfft(x[2000:14000]))
    assert abs(np.argmax(spec) * 16000 / 12000 - 220) < 5


def test_manifest_formats(tmp_path, video_factory):
    import pyarrow as pa

    v = video_factory("a.mp4", seconds=1.0)
    (tmp_path / "m.csv").write_text(f"uri,video_id,license,extra_col\n{v.name},a1,CC0,x\n")
    pq.write_table(pa.table({"uri": [str(v)], "video_id": ["p1"]}), tmp_path / "m.parquet")
    for m, vid in (("m.csv", "a1"), ("m.parquet", "p1")):
        videos, _ = ingest(tmp_path / f"out_{m}", str(tmp_path / m))
        assert [x["video_id"] for x in videos] == [vid] and videos[0]["status"] == "ok"
    videos, _ = ingest(tmp_path / "out_glob", str(tmp_path / "*.mp4"))
    assert [x["video_id"] for x in videos] == ["a"]


def test_frame_reader_streams_and_resamples():
    p = need_shared("face_video", "grid", "bbaf2n.mpg")
    frames = list(iter_frames(p, fps=25))
    assert len(frames) == 75 and frames[0][2].flags["C_CONTIGUOUS"]
    assert [f[0] for f in frames] == list(range(75))
    half = list(iter_frames(p, fps=12.5, start_s=1.0, end_s=2.0))
    assert [f[1] for f in half] == pytest.approx([1.0 + k * 0.08 for k in range(13)])
    # a frame at 12.5 fps equals the 25 fps frame at the same time
    assert np.array_equal(half[1][2], frames[27][2])


def test_rotation_matches_ffmpeg_autorotate(tmp_path):
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg binary not installed")
    import subprocess

    import av

    img = np.zeros((48, 64, 3), np.uint8)
    img[:10, :20] = 255
    path = tmp_path / "r.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.set_display_rotation(90)
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(64, 48, 3)
    ours = next(iter_frames(path, rotation=probe(path).rotation))[2]
    assert np.abs(ours.astype(int) - ref).mean() < 3
