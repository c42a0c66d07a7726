"""A consistent two-speaker conversation and a monologue, written as upstream tables.

``make_conversation(out)`` writes the shards (with markers) of ``clips``, ``speech``, ``words``,
``speakers_faces`` and ``flame`` the upstream stages would produce, plus the audio: shard 0 holds
video ``conv1`` (speaker A asks, speaker B answers, both on camera), shard 1 holds video ``mono1``
(one on-camera speaker talking, an off-camera narrator). Speech comes from espeak-ng (two voices)
when it is installed, else from tone bursts of the same lengths. Word times are spread over each
utterance by character count. FLAME arrays are random but known: track ``k`` of a clip carries
``expression[:, 0] = (k + 1) * 1000 + frame_idx`` so a sample's owner is visible in its values.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from flameqa.io import shards as sh

SR = 16000
FPS = 25.0
MODEL_ID = "flameqa-demo-head"

CONV = [  # (speaker, text)
    ("SPK0", "Hello there, thanks for coming in."),
    ("SPK1", "My pleasure, happy to be here."),
    ("SPK0", "What did you do today?"),
    ("SPK1", "I went to the market and bought fresh bread. Then I walked home along the river."),
    ("SPK0", "That sounds lovely."),
    ("SPK1", "It was a calm and sunny afternoon, perfect for a long walk."),
    ("SPK0", "Where do you live?"),
    ("SPK1", "In a small town by the sea, close to the harbour."),
    ("SPK0", "How long have you lived there"),  # no '?': found by the question-word rule
    ("SPK1", "For almost twenty years now, since I was a child."),
    ("SPK0", "Shall we meet again next week?"),  # nobody answers
]
MONO = [
    ("SPK1", "Welcome back to the kitchen show."),  # off-camera narrator
    ("SPK0", "Cooking is my favourite hobby. I make fresh pasta from scratch every weekend. My grandmother taught me her recipe when I was young."),
]
HIDDEN_ANSWER = 7
"""CONV index of the answer during which B's face is not fitted (valid=false)."""


@dataclass
class Utterance:
    speaker: str
    text: str
    start_s: float
    end_s: float
    words: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class Conversation:
    out: Path
    clips: dict[str, dict] = field(default_factory=dict)
    utterances: dict[str, list[Utterance]] = field(default_factory=dict)
    tracks: dict[str, dict[str, int]] = field(default_factory=dict)
    """clip_id → speaker → track id."""
    flame: dict[tuple[str, int], dict[str, np.ndarray]] = field(default_factory=dict)
    """(clip_id, track_id) → whole-track arrays (frame_idx, valid, expression, ...)."""
    espeak: bool = False


def _speak(text: str, voice: str, pitch: int, tmp: Path) -> np.ndarray:
    """Mono float32 at 16 kHz: espeak-ng (argument list, no shell) or a tone burst of similar length."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        n = int(SR * (0.3 + 0.065 * len(text)))
        t = np.arange(n) / SR
        return (0.2 * np.sin(2 * np.pi * (140 + pitch) * t) * np.hanning(n)).astype(np.float32)
    import soundfile as sf

    wav = tmp / "tts.wav"
    subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", "165", "-w", str(wav), "--", text], check=True, timeout=60, capture_output=True)
    x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    nz = np.flatnonzero(np.abs(x) > 1e-3)  # trim espeak's leading/trailing silence
    x = x[nz[0] : nz[-1] + 1] if nz.size else x
    if sr != SR:  # linear interpolation is plenty for test speech (and avoids importing scipy.signal)
        t = np.arange(int(len(x) * SR / sr)) * (sr / SR)
        x = np.interp(t, np.arange(len(x)), x)
    return x.astype(np.float32)


def _word_times(text: str, start: float, end: float) -> list[tuple[str, float, float]]:
    toks = text.split()
    w = np.array([len(t) + 1 for t in toks], float)
    edges = start + (end - start) * np.concatenate([[0], np.cumsum(w)]) / w.sum()
    return [(t, float(edges[i]), float(edges[i + 1] - 0.02)) for i, t in enumerate(toks)]


def _timeline(lines, voices, t0: float, gap: float, tmp: Path) -> tuple[np.ndarray, list[Utterance]]:
    audio = [np.zeros(int(t0 * SR), np.float32)]
    t, utts = t0, []
    for spk, text in lines:
        voice, pitch = voices[spk]
        x = _speak(text, voice, pitch, tmp)
        u = Utterance(spk, text, t, t + len(x) / SR)
        u.words = _word_times(text, u.start_s, u.end_s)
        utts.append(u)
        audio += [x, np.zeros(int(gap * SR), np.float32)]
        t = u.end_s + int(gap * SR) / SR
    audio.append(np.zeros(int(0.6 * SR), np.float32))
    return np.concatenate(audio), utts


def _track_arrays(rng: np.random.Generator, track: int, n_frames: int) -> dict[str, np.ndarray]:
    fi = np.arange(n_frames, dtype=np.int32)
    expr = rng.normal(size=(n_frames, 100)).astype(np.float32)
    expr[:, 0] = (track + 1) * 1000 + fi
    return {
        "frame_idx": fi,
        "valid": np.ones(n_frames, bool),
        "expression": expr,
        "jaw": rng.normal(scale=0.1, size=(n_frames, 3)).astype(np.float32),
        "neck": rng.normal(scale=0.1, size=(n_frames, 3)).astype(np.float32),
        "global_pose": rng.normal(scale=0.1, size=(n_frames, 3)).astype(np.float32),
        "eyes": rng.normal(scale=0.1, size=(n_frames, 6)).astype(np.float32),
        "transl": rng.normal(scale=0.1, size=(n_frames, 3)).astype(np.float32),
        "nme": np.full(n_frames, 0.03, np.float32) + rng.uniform(0, 0.01, n_frames).astype(np.float32),
        "shape": rng.normal(size=300).astype(np.float32),
    }


def make_conversation(out: Path, seed: int = 0, segment_frames: int = 60) -> Conversation:
    """Write the upstream tables of the test conversation (shard 0) and monologue (shard 1) under ``out``."""
    import soundfile as sf

    out = Path(out)
    tmp = out / "_tts"
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    conv = Conversation(out=out, espeak=shutil.which("espeak-ng") is not None)
    voices = {"SPK0": ("en-us", 40), "SPK1": ("en-gb", 70)}
    specs = [
        ("conv1", CONV, {"SPK0": 0, "SPK1": 1}, "cc-by-4.0", "test: espeak-ng dialogue"),
        ("mono1", MONO, {"SPK0": 0, "SPK1": -1}, "apache-2.0", "test: espeak-ng monologue"),
    ]
    for shard, (vid, lines, spk_tracks, lic, src) in enumerate(specs):
        audio, utts = _timeline(lines, voices, t0=0.9, gap=0.45, tmp=tmp)
        wav = out / "media" / "audio" / f"{vid}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(wav), audio, SR, subtype="PCM_16")
        clip_id = f"{vid}.c000"
        clip_start, clip_end = 0.5, len(audio) / SR  # the clip starts after the video's first 0.5 s
        clip = dict(clip_id=clip_id, video_id=vid, path=f"/videos/{vid}.mp4", audio_path=str(wav), start_s=clip_start, end_s=clip_end,
                    fps=FPS, width=640, height=480, rotation=0, license=lic, source=src, status="ok", error=None)  # fmt: skip
        conv.clips[clip_id] = clip
        conv.utterances[clip_id] = utts
        conv.tracks[clip_id] = spk_tracks
        n_frames = int(np.floor((clip_end - clip_start) * FPS))
        speech, words = [], []
        for i, u in enumerate(utts):
            speech.append(dict(clip_id=clip_id, turn_id=i, speaker=u.speaker, start_s=u.start_s, end_s=u.end_s, overlap=False, text=u.text, status="ok"))
            for w, a, b in u.words:
                words.append(dict(clip_id=clip_id, word_idx=len(words), turn_id=i, speaker=u.speaker, word=w, start_s=a, end_s=b,
                                  prob=0.93, segment_id=i, segment_text=u.text))  # fmt: skip
        faces_rows = [dict(clip_id=clip_id, speaker=s, track_id=t, score=0.8 if t >= 0 else 0.0, scores=[0.8], track_ids=[max(t, 0)]) for s, t in spk_tracks.items()]
        flame_rows = []
        for tid in sorted({t for t in spk_tracks.values() if t >= 0}):
            arr = _track_arrays(rng, tid, n_frames)
            if vid == "conv1" and tid == 1:  # B's face is lost during one answer
                hid = utts[HIDDEN_ANSWER]
                t_f = clip_start + arr["frame_idx"] / FPS
                arr["valid"][(t_f >= hid.start_s) & (t_f < hid.end_s)] = False
            conv.flame[(clip_id, tid)] = arr
            for seg, s0 in enumerate(range(0, n_frames, segment_frames)):  # windows, as the fit stage writes them
                sl = slice(s0, min(n_frames, s0 + segment_frames))
                flame_rows.append(dict(
                    clip_id=clip_id, video_id=vid, track_id=tid, segment=seg, model_id=MODEL_ID, fps=FPS,
                    frame_idx=arr["frame_idx"][sl], valid=arr["valid"][sl], shape=arr["shape"],
                    **{k: arr[k][sl] for k in ("expression", "jaw", "neck", "global_pose", "eyes", "transl")},
                    camera="{}", fit_rmse_px=np.full(sl.stop - sl.start, 1.5, np.float32), nme=arr["nme"][sl],
                    jitter_ratio=None, converged=True, iterations=10, status="ok", error=None,
                ))  # fmt: skip
        for table, rows in (("clips", [clip]), ("speech", speech), ("words", words), ("speakers_faces", faces_rows), ("flame", flame_rows)):
            sh.write_shard(out, table, shard, rows)
            sh.write_marker(out, table, shard, {"stage": "test", "table": table, "shard": shard, "rows": len(rows), "config_hash": f"test-{table}"})
    shutil.rmtree(tmp)
    return conv


@pytest.fixture(scope="session")
def conversation_src(tmp_path_factory) -> Conversation:
    return make_conversation(tmp_path_factory.mktemp("conversation"))


@pytest.fixture
def conversation(conversation_src: Conversation, tmp_path: Path) -> Conversation:
    """A private copy of the upstream tables (tests may run stages into it)."""
    dst = tmp_path / "out"
    shutil.copytree(conversation_src.out, dst)
    import copy

    conv = copy.copy(conversation_src)
    conv.out = dst
    conv.clips = {k: {**v, "audio_path": str(dst / Path(v["audio_path"]).relative_to(conversation_src.out))} for k, v in conversation_src.clips.items()}
    for cid, c in conv.clips.items():  # point the copied clips table at the copied audio
        t = sh.read_shard(dst, "clips", 0 if cid.startswith("conv1") else 1).to_pylist()
        t[0]["audio_path"] = c["audio_path"]
        sh.write_shard(dst, "clips", 0 if cid.startswith("conv1") else 1, t)
    return conv
