"""Speech synthesized with espeak-ng for tests and benchmarks: utterances and dialogues whose every
turn (speaker, start/end seconds, text) is known. Needs the ``espeak-ng`` binary (Debian package
``espeak-ng``); it is called with an argument list, never through a shell."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000

DIALOGUE = [
    ("en-us+m3", "Hello there, how was your trip to the mountains last week?"),
    ("en-us+f3", "It was wonderful. We hiked every morning and the weather stayed clear."),
    ("en-us+m3", "Did you see any wildlife along the trails?"),
    ("en-us+f3", "Yes, we saw two deer and a family of foxes near the lake."),
    ("en-us+m3", "That sounds amazing. Would you go back again next year?"),
    ("en-us+f3", "Absolutely, I already booked a cabin for the summer."),
]


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` (espeak-ng writes 22.05 kHz; resampled here)."""
    from scipy.signal import resample_poly
    import soundfile as sf

    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "u.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True, capture_output=True)
        x, sr = sf.read(str(wav), dtype="float32")
    if x.ndim == 2:
        x = x.mean(1)
    if sr != SR:
        from fractions import Fraction

        f = Fraction(SR, sr)
        x = resample_poly(x, f.numerator, f.denominator).astype(np.float32)
    # espeak leaves ~0.1 s of silence at both ends: trim to the voiced part so turn times are exact
    nz = np.flatnonzero(np.abs(x) > 1e-3)
    return x[nz[0] : nz[-1] + 1] * 0.5 if nz.size else x


@dataclass(frozen=True)
class KnownTurn:
    speaker: str
    start_s: float
    end_s: float
    text: str


def dialogue(lines=DIALOGUE, pause_s: float = 0.7, lead_s: float = 0.5) -> tuple[np.ndarray, list[KnownTurn]]:
    """Concatenate utterances with pauses: returns audio and every turn's speaker, times and text."""
    parts = [np.zeros(int(lead_s * SR), np.float32)]
    turns = []
    t = lead_s
    for voice, text in lines:
        x = speak(text, voice)
        turns.append(KnownTurn(voice, t, t + len(x) / SR, text))
        parts += [x, np.zeros(int(pause_s * SR), np.float32)]
        t += len(x) / SR + pause_s
    return np.concatenate(parts), turns
