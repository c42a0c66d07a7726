"""Active speaker on a conversation made at test time from GRID clips of different speakers.

Two people side by side (bbaf2n left, lbbc2a right); the turns are: left speaks, right speaks,
an off-camera voice (sbia1a's audio, nobody on screen talks), left again. Whoever is not
speaking idles (their clip's silent first frames, back and forth). The `speech` rows are the
known turn times (the speech stage is tested on its own).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flameqa.io import shards as sh
from flameqa.io.schema import column_to_numpy
from flameqa.runner import run_pipeline

from .conftest import GRID, clip_row, faces_config, need, write_table


@pytest.fixture(scope="module")
def conversation(tmp_path_factory, bundle):
    from flameqa.vision.synth import conversation_video

    need(GRID)
    d = tmp_path_factory.mktemp("conv")
    video = d / "conv.mp4"
    truth = conversation_video(video, [GRID / "bbaf2n.mpg", GRID / "lbbc2a.mpg"], [0, 1, GRID / "sbia1a.mpg", 0])
    return video, truth


def _speech_rows(clip_id, truth):
    return [
        dict(clip_id=clip_id, turn_id=k, speaker=t.speaker, start_s=t.start_s, end_s=t.end_s, overlap=False, status="ok")
        for k, t in enumerate(truth)
    ]


def test_each_speaker_maps_to_the_right_face(tmp_path, conversation):
    video, truth = conversation
    # the video cut in two clips (as ingest would at a shot boundary): tracks end at the cut
    c0 = clip_row("conv.c000", video, 0.0, 6.0)
    c1 = clip_row("conv.c001", video, 6.0, 12.0)
    write_table(tmp_path, "clips", [[c0, c1]])
    speech = _speech_rows("conv.c000", [t for t in truth if t.end_s <= 6.0]) + _speech_rows("conv.c001", [t for t in truth if t.start_s >= 6.0])
    write_table(tmp_path, "speech", [speech])
    report = run_pipeline(faces_config(), tmp_path, stages=["faces", "speakers"], show_progress=False)
    assert report.ok, [s.error for st in report.stages for s in st.shards]

    faces = sh.read_table(tmp_path, "faces")
    side = {}  # (clip, track) -> "left" | "right"
    for i, r in enumerate(faces.select(["clip_id", "track_id", "status", "frame_idx"]).to_pylist()):
        assert r["status"] == "ok"
        lm = column_to_numpy(faces.column("landmarks"), i).reshape(-1, 478, 3)
        side[(r["clip_id"], r["track_id"])] = "left" if np.nanmean(lm[:, :, 0]) < 360 else "right"
        assert r["frame_idx"][0] == 0 and len(r["frame_idx"]) == 150, "a track per face, cut at the clip boundary"
    assert sorted(side.values()) == ["left", "left", "right", "right"]

    got = {(r["clip_id"], r["speaker"]): r for r in sh.read_table(tmp_path, "speakers_faces").to_pylist()}
    print(json.dumps({f"{k[0]}/{k[1]}": (v["track_id"], round(v["score"], 3), [round(s, 3) for s in v["scores"]]) for k, v in got.items()}))
    expect = {
        ("conv.c000", "SPK_face0"): "left",
        ("conv.c000", "SPK_face1"): "right",
        ("conv.c001", "SPK_off2"): None,
        ("conv.c001", "SPK_face0"): "left",
    }
    assert set(got) == set(expect)
    for key, where in expect.items():
        r = got[key]
        if where is None:
            assert r["track_id"] == -1, f"off-camera voice {key} was given track {r['track_id']} (scores {r['scores']})"
        else:
            assert r["track_id"] >= 0 and side[(key[0], r["track_id"])] == where, f"{key} → track {r['track_id']}, scores {r['scores']}"
            assert r["score"] >= 0.2 and len(r["scores"]) == 2


def test_without_speech_table_no_rows_and_no_failure(tmp_path, conversation):
    video, _ = conversation
    write_table(tmp_path, "clips", [[clip_row("conv.c000", video, 0.0, 2.0)]])
    report = run_pipeline(faces_config(), tmp_path, stages=["faces", "speakers"], show_progress=False)
    assert report.ok
    assert sh.read_table(tmp_path, "speakers_faces").num_rows == 0


def test_speaker_with_no_face_in_clip(tmp_path):
    """A clip whose faces row is no_face: every speaker maps to -1 with no scores."""
    from flameqa.io.schema import conform
    from flameqa.stages.base import StageContext
    from flameqa.vision.config import SpeakersConfig
    from flameqa.vision.stage import SpeakersStage

    faces = conform("faces", [dict(clip_id="x.c000", video_id="x", track_id=-1, segment=0, fps=25.0, image_width=10, image_height=10,
                                   frame_idx=[], detected=[], det_score=[], landmarks=[], blendshapes=[], transform=[], flags=[], status="no_face")])
    speech = conform("speech", [dict(clip_id="x.c000", turn_id=0, speaker="A", start_s=0.0, end_s=1.0, status="ok"),
                                dict(clip_id="x.c000", turn_id=-1, status="failed", error="x")])
    out = SpeakersStage(SpeakersConfig(), StageContext(out=tmp_path))(faces, {"speech": speech})["speakers_faces"].to_pylist()
    assert len(out) == 1 and out[0]["track_id"] == -1 and out[0]["scores"] == [] and np.isnan(out[0]["score"])


def test_mouth_open_is_recomputed_when_a_row_lacks_it(tmp_path):
    """faces rows written by another tool (no mouth_open) still get scored from their landmarks."""
    from flameqa.io.schema import conform
    from flameqa.stages.base import StageContext
    from flameqa.vision.config import SpeakersConfig
    from flameqa.vision.stage import SpeakersStage

    T, fps = 200, 25.0
    t = np.arange(T) / fps
    talking = (t >= 2) & (t < 5)
    lm = np.zeros((T, 478, 3), np.float32)
    lm[:, 33, 0], lm[:, 263, 0] = 100.0, 200.0
    lm[:, 14, 1] = np.where(talking, 20 + 15 * np.sin(2 * np.pi * 4 * t), 1.0)
    row = dict(clip_id="y.c000", video_id="y", track_id=0, segment=0, fps=fps, image_width=10, image_height=10,
               frame_idx=np.arange(T, dtype=np.int32), detected=np.ones(T, bool), det_score=np.ones(T, np.float32),
               landmarks=lm.reshape(T, -1), blendshapes=np.zeros((T, 52), np.float32), transform=np.zeros((T, 16), np.float32),
               clip_start_s=10.0, flags=[], status="ok")
    faces = conform("faces", [row])
    speech = conform("speech", [dict(clip_id="y.c000", turn_id=0, speaker="A", start_s=12.0, end_s=15.0, status="ok")])
    (out,) = SpeakersStage(SpeakersConfig(), StageContext(out=tmp_path))(faces, {"speech": speech})["speakers_faces"].to_pylist()
    assert out["track_id"] == 0 and out["score"] > 0.5, out
