"""Test and benchmark media with known truth, composed from real talking-head clips (e.g. GRID).

* :func:`conversation_video`: faces side by side in one frame, speaking in turns. While one person
  speaks (their clip's video and audio), the others are idle: their clip's first, silent frames
  played back and forth (GRID clips open with ~0.5 s of silence), so an idle face still blinks and
  moves a little but does not talk. A turn may also be an off-camera voice (audio only).
* :func:`talking_head_video`: one face scaled into a larger canvas (e.g. 1280×720), clips looped
  to a given duration: the benchmark input.

Written with PyAV (H.264 + AAC), no ffmpeg binary needed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

SAMPLE_RATE = 16000


@dataclass
class Clip:
    """A decoded clip: frames ``[T, H, W, 3]`` uint8 RGB at ``fps`` and mono audio at 16 kHz."""

    frames: np.ndarray
    audio: np.ndarray
    fps: float

    @property
    def n(self) -> int:
        return int(self.frames.shape[0])


def load_clip(path: str | Path, fps: float = 25.0) -> Clip:
    """Decode a short clip fully (test media only: a few seconds)."""
    from flameqa.io.media import extract_audio, iter_frames, read_wav

    frames = np.stack([f for _, _, f in iter_frames(path, fps=fps)])
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "a.wav"
        try:
            extract_audio(path, wav, SAMPLE_RATE)
            audio, _ = read_wav(wav)
        except Exception:  # noqa: BLE001 - a clip without audio gets silence
            audio = np.zeros(0, np.float32)
    n_audio = int(round(len(frames) / fps * SAMPLE_RATE))
    audio = np.pad(audio, (0, max(0, n_audio - len(audio))))[:n_audio].astype(np.float32)
    return Clip(frames, audio, fps)


def _idle(clip: Clip, n: int, idle_frames: int) -> np.ndarray:
    """``n`` frames going back and forth over the clip's first ``idle_frames`` (silent) frames."""
    k = max(1, min(idle_frames, clip.n))
    cycle = list(range(k)) + list(range(k - 2, 0, -1)) or [0]
    return clip.frames[[cycle[i % len(cycle)] for i in range(n)]]


@dataclass
class TurnTruth:
    speaker: str
    start_s: float
    end_s: float
    face: int | None
    """Index of the on-screen face (left to right) that speaks, None for an off-camera voice."""


def conversation_video(
    dest: str | Path,
    faces: Sequence[str | Path],
    turns: Sequence[int | str | Path],
    fps: float = 25.0,
    idle_frames: int = 10,
    size: tuple[int, int] | None = None,
) -> list[TurnTruth]:
    """Write a conversation of ``faces`` side by side; returns the truth turns.

    Args:
        faces: one clip per on-screen person (left to right).
        turns: per turn, an index into ``faces`` (that person speaks) or the path of another clip
            whose audio is an off-camera voice (every face idles meanwhile).
        size: (W, H) to scale the composed frame to (None: tiles side by side at native size).
    """
    clips = [load_clip(p, fps) for p in faces]
    h = min(c.frames.shape[1] for c in clips)
    w = min(c.frames.shape[2] for c in clips)
    truth: list[TurnTruth] = []
    segments: list[tuple[np.ndarray, np.ndarray]] = []
    t = 0
    for k, turn in enumerate(turns):
        if isinstance(turn, int):
            speaking, src, label = turn, clips[turn], f"SPK_face{turn}"
        else:
            speaking, src, label = None, load_clip(turn, fps), f"SPK_off{k}"
        n = src.n
        tiles = [c.frames[:n, :h, :w] if i == speaking else _idle(c, n, idle_frames)[:, :h, :w] for i, c in enumerate(clips)]
        segments.append((np.concatenate(tiles, axis=2), src.audio))
        truth.append(TurnTruth(label, t / fps, (t + n) / fps, speaking))
        t += n
    write_video(dest, (f for frames, _ in segments for f in frames), fps, np.concatenate([a for _, a in segments]), size=size)
    return truth


def talking_head_video(
    dest: str | Path,
    clips: Sequence[str | Path],
    duration_s: float,
    size: tuple[int, int] = (1280, 720),
    fps: float = 25.0,
    face_height: float = 1.0,
) -> int:
    """Loop ``clips`` to ``duration_s`` with each frame scaled to ``face_height`` × the canvas height
    and centred in a ``size`` canvas; returns the number of frames written."""
    import cv2

    loaded = [load_clip(p, fps) for p in clips]
    W, H = size
    n_total = int(round(duration_s * fps))

    def frames() -> Iterator[np.ndarray]:
        n = 0
        while n < n_total:
            for c in loaded:
                for f in c.frames:
                    if n >= n_total:
                        return
                    th = int(H * face_height)
                    tw = min(W, int(round(f.shape[1] * th / f.shape[0])))
                    canvas = np.zeros((H, W, 3), np.uint8)
                    y0, x0 = (H - th) // 2, (W - tw) // 2
                    canvas[y0 : y0 + th, x0 : x0 + tw] = cv2.resize(f, (tw, th), interpolation=cv2.INTER_LINEAR)
                    n += 1
                    yield canvas

    audio = np.concatenate([c.audio for c in loaded])
    reps = int(np.ceil(duration_s * SAMPLE_RATE / max(1, len(audio))))
    write_video(dest, frames(), fps, np.tile(audio, reps)[: int(duration_s * SAMPLE_RATE)])
    return n_total


def write_video(
    dest: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    size: tuple[int, int] | None = None,
    crf: int = 20,
    preset: str = "veryfast",
    rotation: int = 0,
) -> Path:
    """Encode RGB frames ``[H, W, 3]`` (+ 16 kHz mono audio) as H.264 (+ AAC) in an mp4/mkv.

    ``rotation``: display rotation written in the stream (as phones do); frames are stored as given.
    """
    from fractions import Fraction

    import av
    import cv2

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dest), "w") as c:
        vs = None
        for f in frames:
            if size is not None and (f.shape[1], f.shape[0]) != tuple(size):
                f = cv2.resize(f, tuple(size), interpolation=cv2.INTER_AREA)
            if vs is None:
                vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                # yuv420p needs even sizes
                vs.width, vs.height, vs.pix_fmt = f.shape[1] // 2 * 2, f.shape[0] // 2 * 2, "yuv420p"
                vs.options = {"crf": str(crf), "preset": preset}
                if rotation:
                    vs.set_display_rotation(rotation)
                ast = None
                if audio is not None and len(audio):
                    ast = c.add_stream("aac", rate=SAMPLE_RATE)
                    ast.layout = "mono"
            f = np.ascontiguousarray(f[: vs.height, : vs.width])
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        if vs is None:
            raise ValueError(f"{dest}: no frames to write")
        for p in vs.encode():
            c.mux(p)
        if ast is not None:
            a = np.asarray(audio, np.float32)
            for k in range(0, len(a), 1024):
                fr = av.AudioFrame.from_ndarray(a[None, k : k + 1024].copy(), format="fltp", layout="mono")
                fr.sample_rate = SAMPLE_RATE
                fr.pts = k
                for p in ast.encode(fr):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)
    return dest
