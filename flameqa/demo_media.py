"""Demo media: speech synthesized with espeak-ng and a conversation composed from talking-head clips.

The composed conversation alternates an off-camera interviewer's spoken question (espeak-ng; the
answerer's face is shown still while listening) with the answerer's own clip (video and audio), so
every turn's speaker, time and words are known exactly.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


def synthesize(text: str, dest: str | Path, voice: str = "en-us+f3", speed: int = 150, sample_rate: int = 16000) -> np.ndarray:
    """Speak ``text`` with espeak-ng into a 16 kHz mono wav; returns the float32 samples."""
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (make setup installs it; or: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "s.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(raw), "--", text], check=True, capture_output=True)
        x, sr = sf.read(str(raw), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != sample_rate:
        from scipy.signal import resample_poly
        from math import gcd

        g = gcd(sr, sample_rate)
        x = resample_poly(x, sample_rate // g, sr // g).astype(np.float32)
    sf.write(str(dest), x, sample_rate, subtype="PCM_16")
    return x


@dataclass
class Turn:
    speaker: str
    start_s: float
    end_s: float
    text: str
    on_camera: bool


@dataclass
class Conversation:
    path: Path
    turns: list[Turn] = field(default_factory=list)


def compose_conversation(
    clips: Sequence[tuple[str | Path, str]],
    questions: Sequence[str | None],
    dest: str | Path,
    fps: int = 25,
    gap_s: float = 0.4,
    voice: str = "en-us+f3",
    sample_rate: int = 16000,
) -> Conversation:
    """Compose ``[question_i (still frame of clip i), clip_i]...`` into one H.264+AAC video.

    ``clips``: (video path, transcript) per answerer; ``questions[i]`` is spoken before clip i
    (None: clip i follows without a question, a monologue turn). Returns the truth turns.
    """
    import av

    from flameqa.io.media import extract_audio, iter_frames, read_wav

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    conv = Conversation(path=dest)
    segments: list[tuple[list[np.ndarray], np.ndarray]] = []  # (frames, audio)
    t = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, ((clip, transcript), q) in enumerate(zip(clips, questions)):
            frames = [f for _, _, f in iter_frames(clip, fps=fps)]
            wav = Path(tmp) / f"a{i}.wav"
            extract_audio(clip, wav, sample_rate)
            audio, _ = read_wav(wav)
            n_clip = len(frames)
            audio = np.pad(audio, (0, max(0, int(round(n_clip / fps * sample_rate)) - len(audio))))[: int(round(n_clip / fps * sample_rate))]
            if q:
                qa = synthesize(q, Path(tmp) / f"q{i}.wav", voice=voice, sample_rate=sample_rate)
                n_q = int(np.ceil((len(qa) / sample_rate + gap_s) / (1 / fps)))
                qa = np.pad(qa, (int(0.1 * sample_rate), 0))
                q_audio = np.pad(qa, (0, max(0, int(round(n_q / fps * sample_rate)) - len(qa))))[: int(round(n_q / fps * sample_rate))]
                speech_end = t + min(len(qa) / sample_rate, n_q / fps)
                conv.turns.append(Turn("interviewer", round(t + 0.1, 3), round(speech_end, 3), q, False))
                segments.append(([frames[0]] * n_q, q_audio))
                t += n_q / fps
            conv.turns.append(Turn(f"speaker{i}", round(t, 3), round(t + n_clip / fps, 3), transcript, True))
            segments.append((frames, audio))
            t += n_clip / fps
        h, w = segments[0][0][0].shape[:2]
        with av.open(str(dest), "w") as c:
            vs = c.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"crf": "18", "preset": "veryfast"}
            ast = c.add_stream("aac", rate=sample_rate)
            ast.layout = "mono"
            for frames, _ in segments:
                for f in frames:
                    for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                        c.mux(p)
            for p in vs.encode():
                c.mux(p)
            audio = np.concatenate([a for _, a in segments]).astype(np.float32)
            for k in range(0, len(audio), 1024):
                fr = av.AudioFrame.from_ndarray(audio[None, k : k + 1024].copy(), format="fltp", layout="mono")
                fr.sample_rate = sample_rate
                fr.pts = k
                for p in ast.encode(fr):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)
    log.info("composed %s: %d turns, %.1f s", dest, len(conv.turns), t)
    return conv


DEMO_QUESTIONS = [
    "What is the command for the first player?",
    "And what should the second player do?",
    "Where does the next piece go?",
    None,
]


def demo_clips(root: str | Path | None = None) -> list[tuple[Path, str]]:
    """The shipped GRID clips (CC-BY-4.0, see NOTICE) with their transcripts."""
    root = Path(root) if root else Path(__file__).resolve().parents[1] / "data" / "demo" / "grid"
    rows = [line.split("\t") for line in (root / "transcripts.tsv").read_text().splitlines() if line.strip()]
    return [(root / name, text.strip()) for name, text in rows]
