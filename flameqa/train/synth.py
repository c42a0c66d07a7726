"""A synthetic FLAME-QA dataset with known speech → motion structure (no TTS, numpy only).

Each answer is a string of "syllables": Hann-shaped loudness bumps over a harmonic carrier whose
formants pick one of three vowels (a, i, u), with a noise burst at each onset and a slowly drifting
pitch. The answerer's motion follows the audio with a lag (``lag_frames``) through a first-order
low-pass (facial inertia):

- jaw opening (jaw x rotation) ∝ loudness, with a vowel-dependent gain (open "a", half-open "i"/"u");
- lips: "i" drives smile/stretch, "u" drives pucker/funnel, "a" drives the lower lip down;
- brows rise with the pitch contour (upper-face dynamics that audio, but not loudness, explains);
- unpredictable parts: blinks, a slow neck random walk and low-pass noise on every driven dimension;
- identities differ by voice pitch, loudness-to-jaw gain, a resting expression and a resting jaw;
- questions containing "joke"/"funny" make the answerer smile more (text conditioning can learn it).

So a loudness-only predictor can get the jaw's timing roughly right but not its vowel-dependent
size, the lip shapes or the lag; a model over log-mel features can. Expression indices follow the
demo head's named expressions (``flameqa.flame.demo_head.EXPRESSION_NAMES``).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np

from flameqa.configbase import Config

log = logging.getLogger(__name__)

__all__ = ["SynthConfig", "make_samples", "make_synthetic_dataset"]

# demo-head expression indices (EXPRESSION_NAMES)
BLINK = (0, 1)
BROW_UP = (4, 5, 6, 7)
SMILE = (10, 11)
STRETCH = (12, 13)
PUCKER, FUNNEL, UPPER_LIP_UP, LOWER_LIP_DOWN = 14, 15, 16, 17
VOWELS = ("a", "i", "u")
# (F1, F2) in Hz per vowel
FORMANTS = {"a": (800.0, 1200.0), "i": (300.0, 2300.0), "u": (320.0, 800.0)}
JAW_PER_VOWEL = {"a": 0.20, "i": 0.08, "u": 0.06}  # radians at full loudness
QUESTIONS = (
    "What did you do last weekend?",
    "How do you usually start your day?",
    "Can you explain how this works?",
    "Where did you grow up?",
    "Tell me a joke about your work.",
    "What is the funny part of your job?",
    "Do you know a good joke?",
    "What was the funny moment of the trip?",
)
SYLLABLES = ("ba", "di", "mu", "ka", "ti", "lu", "pa", "ni", "su")


class SynthConfig(Config):
    n_identities: int = 6
    """Answerer identities (``synth-00`` ...)."""
    samples_per_identity: int = 6
    seconds: tuple[float, float] = (3.0, 5.0)
    """Answer duration range, seconds."""
    fps: float = 25.0
    sample_rate: int = 16000
    lag_frames: int = 2
    """Motion lags the audio envelope by this many frames (80 ms at 25 fps)."""
    noise: float = 0.05
    """Low-pass noise on every driven expression dimension (coefficient units)."""
    n_shape: int = 100
    """Identity shape coefficients stored per sample."""
    seed: int = 0


def _smooth_noise(rng: np.random.Generator, n: int, alpha: float, scale: float, dims: int = 1) -> np.ndarray:
    """AR(1) noise ``[n, dims]`` with unit-ish stationary std times ``scale``."""
    e = rng.standard_normal((n, dims)) * np.sqrt(1 - alpha**2)
    out = np.empty_like(e)
    acc = rng.standard_normal(dims)
    for i in range(n):
        acc = alpha * acc + e[i]
        out[i] = acc
    return out * scale


def _lowpass(x: np.ndarray, alpha: float) -> np.ndarray:
    """Causal first-order low-pass along axis 0 (y[t] = a y[t-1] + (1-a) x[t])."""
    y = np.empty_like(x, dtype=np.float64)
    acc = np.zeros(x.shape[1:])
    for t in range(len(x)):
        acc = alpha * acc + (1 - alpha) * x[t]
        y[t] = acc
    return y


def _formant_gain(freqs: np.ndarray, vowel: str) -> np.ndarray:
    g = np.zeros_like(freqs)
    for f, bw in zip(FORMANTS[vowel], (90.0, 120.0)):
        g += 1.0 / (1.0 + ((freqs - f) / bw) ** 2)
    return g + 0.02


def _identity(rng: np.random.Generator, i: int, cfg: SynthConfig) -> dict:
    rest = np.zeros(100, np.float32)
    rest[:25] = rng.normal(0, 0.25, 25)
    return {
        "name": f"synth-{i:02d}",
        "f0": float(rng.uniform(100, 240)),
        "jaw_gain": float(rng.uniform(0.7, 1.3)),
        "lip_gain": float(rng.uniform(0.7, 1.3)),
        "rest_jaw": float(rng.uniform(0.0, 0.04)),
        "rest": rest,
        "shape": (rng.standard_normal(cfg.n_shape) * np.exp(-np.arange(cfg.n_shape) / 20.0)).astype(np.float32),
        "loudness": float(rng.uniform(0.5, 1.0)),
    }


def _sample(rng: np.random.Generator, ident: dict, k: int, cfg: SynthConfig) -> dict:
    sr, fps = cfg.sample_rate, cfg.fps
    dur = float(rng.uniform(*cfg.seconds))
    n = int(round(dur * sr))
    t = np.arange(n) / sr
    # syllable plan: (start_s, length_s, vowel, loudness)
    plan, words, s = [], [], 0.15
    while s < dur - 0.3:
        nsyl = int(rng.integers(1, 4))
        w_start, text = s, ""
        for _ in range(nsyl):
            length = float(rng.uniform(0.12, 0.3))
            if s + length > dur - 0.05:
                break
            v = VOWELS[int(rng.integers(3))]
            plan.append((s, length, v, float(rng.uniform(0.5, 1.0))))
            text += SYLLABLES[int(rng.integers(len(SYLLABLES)))]
            s += length + float(rng.uniform(0.0, 0.05))
        if text:
            words.append({"word": text, "start_s": np.float32(w_start), "end_s": np.float32(s), "prob": np.float32(1.0)})
        s += float(rng.uniform(0.05, 0.2)) + (float(rng.uniform(0.2, 0.5)) if rng.random() < 0.2 else 0.0)
    # pitch contour: slow sum of sines, in [-1, 1]
    ph = rng.uniform(0, 2 * np.pi, 3)
    inton = (np.sin(2 * np.pi * 0.4 * t + ph[0]) + 0.5 * np.sin(2 * np.pi * 0.9 * t + ph[1]) + 0.3 * np.sin(2 * np.pi * 1.7 * t + ph[2])) / 1.8
    f0 = ident["f0"] * (1 + 0.15 * inton)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    audio = np.zeros(n)
    env = {v: np.zeros(n) for v in VOWELS}
    for start, length, v, loud in plan:
        a, b = int(start * sr), min(n, int((start + length) * sr))
        bump = np.hanning(b - a) * loud
        env[v][a:b] += bump
        harm = np.arange(1, int(3500 / ident["f0"]) + 1)
        gains = _formant_gain(harm * f0[a:b].mean(), v)  # [H] at the syllable's mean pitch
        audio[a:b] += bump * (gains @ np.sin(harm[:, None] * phase[None, a:b])) / 3.0
        burst = min(b - a, int(0.03 * sr))
        audio[a : a + burst] += 0.3 * loud * rng.standard_normal(burst) * np.linspace(1, 0, burst)
    audio = audio / (np.abs(audio).max() + 1e-9) * 0.5 * ident["loudness"] + rng.normal(0, 1e-3, n)

    # motion frames at answer-relative times offset + f / fps
    offset = float(rng.uniform(0, 1 / fps))
    T = int((dur - offset) * fps)
    tf = offset + np.arange(T) / fps - cfg.lag_frames / fps  # the audio time each frame responds to
    idx = np.clip((tf * sr).astype(np.int64), 0, n - 1)
    on = (tf >= 0)[:, None]
    e = {v: np.where(on[:, 0], env[v][idx], 0.0) ** 0.7 for v in VOWELS}
    pitch = np.where(on[:, 0], inton[idx], 0.0)
    loud_any = np.clip(sum(e.values()), 0, 1)
    funny = bool(k % 2)

    expr = np.tile(ident["rest"], (T, 1)).astype(np.float64)
    drive = np.zeros((T, 100))
    g = ident["lip_gain"]
    for d in SMILE:
        drive[:, d] += 1.2 * g * e["i"]
    for d in STRETCH:
        drive[:, d] += 0.6 * g * e["i"]
    drive[:, PUCKER] += 1.5 * g * e["u"]
    drive[:, FUNNEL] += 0.8 * g * e["u"]
    drive[:, LOWER_LIP_DOWN] += 0.8 * g * e["a"]
    drive[:, UPPER_LIP_UP] += 0.5 * g * e["a"]
    for d in BROW_UP:
        drive[:, d] += 0.8 * np.clip(pitch, 0, None) * (0.3 + loud_any)
    if funny:
        for d in SMILE:
            drive[:, d] += 0.6
    driven = np.abs(drive).max(0) > 0
    drive = _lowpass(drive, 0.35)
    drive[:, driven] += _smooth_noise(rng, T, 0.7, cfg.noise, int(driven.sum()))
    expr += drive
    # blinks: ~ every 3 s, 6 frames
    for b0 in np.nonzero(rng.random(T) < 1 / (3 * fps))[0]:
        w = np.hanning(8)[: T - b0] if b0 + 8 > T else np.hanning(8)
        for d in BLINK:
            expr[b0 : b0 + len(w), d] += 1.5 * w
    jaw = np.zeros((T, 3))
    jaw_open = sum(JAW_PER_VOWEL[v] * e[v] for v in VOWELS) * ident["jaw_gain"]
    jaw[:, 0] = ident["rest_jaw"] + _lowpass(jaw_open, 0.35) + _smooth_noise(rng, T, 0.7, 0.005)[:, 0]
    neck = _smooth_noise(rng, T, 0.97, 0.03, 3)
    valid = np.ones(T, bool)
    if T > 20 and rng.random() < 0.3:  # a short tracking drop-out
        a = int(rng.integers(0, T - 5))
        valid[a : a + 3] = False

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    q = QUESTIONS[int(rng.integers(4)) + (4 if funny else 0)]
    sid = f"{ident['name']}-{k:03d}"
    zeros3 = np.zeros((T, 3), np.float32)
    return {
        "sample_id": sid,
        "mode": "monologue",
        "clip_id": sid,
        "video_id": ident["name"],
        "question_text": q,
        "question_source": "template",
        "answer_text": " ".join(w["word"] for w in words),
        "answer_speaker": "A",
        "answer_start_s": 0.0,
        "answer_end_s": dur,
        "answer_words": words,
        "answer_audio": {"bytes": buf.getvalue(), "path": f"{sid}.wav"},
        "context": [],
        "identity": ident["name"],
        "model_id": "flameqa-demo-head",
        "fps": fps,
        "shape": ident["shape"],
        "expression": expr.astype(np.float32),
        "jaw": jaw.astype(np.float32),
        "neck": neck.astype(np.float32),
        "global_pose": zeros3,
        "eyes": np.zeros((T, 6), np.float32),
        "transl": zeros3,
        "valid": valid.tolist(),
        "face_visible_ratio": np.float32(valid.mean()),
        "nme_mean": np.float32(0.0),
        "nme_max": np.float32(0.0),
        "overlap_ratio": np.float32(0.0),
        "asr_prob_mean": np.float32(1.0),
        "duration_s": np.float32(dur),
        "license": "CC0-1.0 (synthetic)",
        "source": "flameqa.train.synth",
        "answer_track_id": 0,
        "clip_start_s": 0.0,
        "frame_idx": np.arange(T, dtype=np.int32).tolist(),
        "motion_offset_s": np.float32(offset),
        "n_frames": T,
    }


def make_samples(cfg: SynthConfig = SynthConfig()) -> list[dict]:
    """Rows of the ``samples`` table (python/numpy values), deterministic in ``cfg.seed``."""
    rows = []
    for i in range(cfg.n_identities):
        rng = np.random.default_rng([cfg.seed, i])
        ident = _identity(rng, i, cfg)
        for k in range(cfg.samples_per_identity):
            rows.append(_sample(np.random.default_rng([cfg.seed, i, k + 1]), ident, k, cfg))
    return rows


def make_synthetic_dataset(out: str | os.PathLike, cfg: SynthConfig = SynthConfig(), splits: dict[str, float] | None = None) -> Path:
    """Generate :func:`make_samples` and export them with the real exporter
    (:func:`flameqa.export.hub_folder.export_dataset`: Hub layout, splits by identity, card) to
    ``out``. ``splits`` defaults to the exporter's. Returns ``out``."""
    import tempfile

    from flameqa.export.config import ExportConfig
    from flameqa.export.hub_folder import export_dataset
    from flameqa.io import shards
    from flameqa.io.schema import conform

    out = Path(out)
    rows = make_samples(cfg)
    log.info("synthetic FLAME-QA: %d samples, %d identities → %s", len(rows), cfg.n_identities, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.run-", dir=out.parent) as run:
        shards.write_shard(run, "samples", 0, conform("samples", rows))
        shards.write_marker(run, "samples", 0, {"rows": len(rows), "source": "flameqa.train.synth"})
        export_dataset(run, out, ExportConfig(splits=splits) if splits else None)
    return out
