"""Exported FLAME-QA samples → tensors for the speech → motion trainer.

A sample row (``schemas/v1/samples.yaml``) becomes a :class:`MotionSequence`:

- ``feats [T*k, M]``: log-mel of the answer audio, k frames per motion frame (``frames_per_motion_frame``);
  feature frame j ends at ``(j + 1) / (fps * k)`` seconds after the first motion frame and looks
  ``window_s`` back, so motion frame f sees audio up to the end of its own frame interval (causal).
  The audio is shifted by ``motion_offset_s`` first: motion frame f is at ``answer_start_s +
  motion_offset_s + f / fps`` and the answer audio starts at ``answer_start_s``.
- ``motion [T, D]``: expression[:, :n_expr] ‖ jaw ‖ neck (D = n_expr + 6), ``valid [T]``.
- ``energy [T]``: log RMS of the audio in each motion frame's interval (baselines, lip-sync metric).
- ``text [L]``: hashed bag-of-words bucket ids of the question (0 is padding).

Training draws random fixed-length windows (:class:`WindowBatchSampler` over an in-memory
:class:`WindowDataset`, or :class:`StreamingWindows` over a ``datasets`` stream); batch ``b`` is a
pure function of (seed, b), so resuming at step s only needs s. Evaluation takes whole sequences.
Targets are normalised per identity (:class:`NormStats`, saved with the checkpoint); train and
validation are split by identity (:func:`split_identities`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from flameqa.train.config import DataConfig

log = logging.getLogger(__name__)

__all__ = [
    "LogMel",
    "mel_filterbank",
    "MotionSequence",
    "NormStats",
    "WindowDataset",
    "WindowBatchSampler",
    "StreamingWindows",
    "collate_windows",
    "decode_audio",
    "hash_text",
    "iter_rows",
    "load_sequences",
    "sequence_from_row",
    "split_identities",
    "is_val_row",
    "motion_dim",
]

SAMPLE_COLUMNS = (
    "sample_id", "identity", "fps", "answer_audio", "expression", "jaw", "neck", "valid",
    "question_text", "shape", "motion_offset_s", "model_id",
)  # fmt: skip
_EPS = 1e-8


def motion_dim(n_expr: int) -> int:
    """D = n_expr expression + 3 jaw + 3 neck."""
    return n_expr + 6


# ---------------------------------------------------------------------------------------------
# audio and text features
# ---------------------------------------------------------------------------------------------


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's auditory-toolbox scale: linear below 1 kHz, logarithmic above (librosa's default)
    f = np.asarray(f, np.float64)
    return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + 27.0 * np.log(np.maximum(f, 1e-9) / 1000.0) / np.log(6.4))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp(np.log(6.4) * (m - 15.0) / 27.0))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft//2 + 1]``, Slaney scale and area normalisation —
    the same matrix as ``librosa.filters.mel`` with its defaults (tested), without importing
    librosa (and numba) in every training, prediction and evaluation process."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_f = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return w.astype(np.float32)


class LogMel:
    """Causal log-mel frames at ``fps * k`` frames per second.

    Frame j covers audio samples ``[end_j - win, end_j)`` with ``end_j = round((j + 1) * sr / (fps*k))``
    (exact for any fps; hop need not be an integer number of samples). Output ``[F, n_mels]``
    float32, natural log of mel power + 1e-6.
    """

    def __init__(self, sample_rate: int, fps: float, k: int, n_mels: int, window_s: float) -> None:
        self.sr, self.fps, self.k, self.n_mels = sample_rate, fps, k, n_mels
        self.win = int(round(window_s * sample_rate))
        self.n_fft = 1 << max(0, (self.win - 1).bit_length())
        self.rate = fps * k
        self.fb = torch.as_tensor(mel_filterbank(sample_rate, self.n_fft, n_mels, fmin=20.0))  # [M, n_fft//2+1]
        self.window = torch.hann_window(self.win, periodic=True)

    def __call__(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        """``wav [N]`` (aligned: sample 0 = first motion frame) → ``[n_frames * k, n_mels]``."""
        F = n_frames * self.k
        ends = np.round((np.arange(F) + 1) * self.sr / self.rate).astype(np.int64)
        need = int(ends[-1]) if F else 0
        x = np.zeros(self.win + need, np.float32)  # win zeros on the left: frames before the audio starts
        m = min(len(wav), need)
        x[self.win : self.win + m] = wav[:m]
        idx = ends[:, None] + np.arange(self.win)[None, :]  # [F, win] into x (offset by the left pad)
        frames = torch.from_numpy(x[idx]) * self.window
        spec = torch.fft.rfft(frames, n=self.n_fft).abs() ** 2  # [F, n_fft//2+1]
        mel = spec @ self.fb.T  # [F, M]
        return torch.log(mel + 1e-6).numpy().astype(np.float32)

    def energy(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        """Log RMS per motion frame interval ``[f/fps, (f+1)/fps)`` → ``[n_frames]``."""
        b = np.round(np.arange(n_frames + 1) * self.sr / self.fps).astype(np.int64)
        x = np.zeros(int(b[-1]), np.float32)
        m = min(len(wav), len(x))
        x[:m] = wav[:m]
        c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        ms = (c[b[1:]] - c[b[:-1]]) / np.maximum(b[1:] - b[:-1], 1)
        return (0.5 * np.log(ms + 1e-10)).astype(np.float32)


def decode_audio(value: Any, sample_rate: int, base_dir: str | os.PathLike | None = None) -> np.ndarray:
    """An audio cell (``{bytes, path}`` struct, or ``datasets`` decoded ``{array, sampling_rate}``)
    → mono float32 at ``sample_rate``. Raises ValueError saying what was missing."""
    import soundfile as sf

    if value is None:
        raise ValueError("answer_audio is null")
    if "array" in value and value.get("array") is not None:
        wav, sr = np.asarray(value["array"], np.float32), int(value["sampling_rate"])
    elif value.get("bytes"):
        try:
            wav, sr = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise ValueError(f"answer_audio bytes are not readable audio: {e}") from None
        wav = wav.mean(1)
    elif value.get("path"):
        p = Path(value["path"])
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if not p.is_file():
            raise ValueError(f"answer_audio has no bytes and its path {value['path']!r} does not exist")
        wav, sr = sf.read(str(p), dtype="float32", always_2d=True)
        wav = wav.mean(1)
    else:
        raise ValueError("answer_audio has neither bytes nor a path")
    if sr != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(sr, sample_rate)
        wav = resample_poly(wav, sample_rate // g, sr // g).astype(np.float32)
    return wav


_WORD = re.compile(r"[a-z0-9']+")


def hash_text(text: str | None, buckets: int) -> np.ndarray:
    """Hashed bag of words: lower-cased word tokens → crc32 % buckets + 1 (0 is padding) ``[L]`` int64."""
    if not text or buckets <= 0:
        return np.zeros(0, np.int64)
    toks = _WORD.findall(text.lower())
    return np.array([zlib.crc32(t.encode()) % buckets + 1 for t in toks], np.int64)


# ---------------------------------------------------------------------------------------------
# sequences
# ---------------------------------------------------------------------------------------------


@dataclass
class MotionSequence:
    """One answer, aligned: features, motion and their frame masks (see the module doc for shapes)."""

    sample_id: str
    identity: str
    feats: np.ndarray
    """``[T*k, M]`` log-mel (unnormalised)."""
    motion: np.ndarray
    """``[T, D]`` expression[:n_expr] ‖ jaw ‖ neck (raw FLAME units)."""
    valid: np.ndarray
    """``[T]`` bool."""
    energy: np.ndarray
    """``[T]`` log RMS per frame."""
    text: np.ndarray
    """``[L]`` int64 hashed question words."""
    expression_full: np.ndarray
    """``[T, 100]`` stored expression (ground truth for vertex metrics)."""
    shape: np.ndarray
    """``[S]`` identity shape coefficients (may be empty)."""
    fps: float
    question_text: str = ""
    model_id: str = ""
    split: str = ""
    """The dataset split the sample came from."""

    @property
    def n_frames(self) -> int:
        return int(self.motion.shape[0])


def _cell(table, name: str, i: int) -> Any:
    from flameqa.io.schema import column_to_numpy

    if name not in table.column_names:
        return None
    col = table.column(name)
    t = col.type
    import pyarrow as pa

    if pa.types.is_list(t) and (pa.types.is_fixed_size_list(t.value_type) or pa.types.is_primitive(t.value_type) or pa.types.is_boolean(t.value_type)):
        v = column_to_numpy(col.slice(i, 1), 0)
        return v
    return col[i].as_py()


def sequence_from_row(row: dict[str, Any], cfg: DataConfig, featurizer: LogMel, base_dir: str | os.PathLike | None = None) -> MotionSequence:
    """A sample row (values as numpy/python) → :class:`MotionSequence`; ValueError names the problem."""
    try:
        return _sequence_from_row(row, cfg, featurizer, base_dir)
    except (TypeError, KeyError) as e:  # a null or malformed column
        raise ValueError(f"sample {row.get('sample_id')}: malformed row ({type(e).__name__}: {e})") from None


def _sequence_from_row(row: dict[str, Any], cfg: DataConfig, featurizer: LogMel, base_dir: str | os.PathLike | None) -> MotionSequence:
    sid = str(row.get("sample_id"))
    fps = float(row.get("fps") or 0.0)
    if abs(fps - cfg.fps) > 1e-3:
        raise ValueError(f"sample {sid}: fps {fps} differs from data.fps {cfg.fps} (resampling motion is not supported)")
    expr = row.get("expression")
    if expr is None or len(expr) == 0:
        raise ValueError(f"sample {sid}: no expression frames")
    expr = np.asarray(expr, np.float32).reshape(len(expr), -1)
    T = expr.shape[0]
    if T < cfg.min_frames:
        raise ValueError(f"sample {sid}: {T} frames < data.min_frames={cfg.min_frames}")
    full = np.zeros((T, 100), np.float32)
    full[:, : min(100, expr.shape[1])] = expr[:, :100]
    if row.get("jaw") is None:
        raise ValueError(f"sample {sid}: jaw is null")
    jaw = np.asarray(row["jaw"], np.float32).reshape(T, 3)
    neck = np.asarray(row["neck"], np.float32).reshape(T, 3) if row.get("neck") is not None else np.zeros((T, 3), np.float32)
    valid = np.asarray(row["valid"], bool).reshape(T) if row.get("valid") is not None else np.ones(T, bool)
    motion = np.concatenate([full[:, : cfg.n_expr], jaw, neck], 1)
    wav = decode_audio(row.get("answer_audio"), cfg.sample_rate, base_dir)
    off = int(round(float(row.get("motion_offset_s") or 0.0) * cfg.sample_rate))
    wav = wav[off:] if off >= 0 else np.concatenate([np.zeros(-off, np.float32), wav])
    shape = row.get("shape")
    return MotionSequence(
        sample_id=sid,
        identity=str(row.get("identity") or "unknown"),
        feats=featurizer(wav, T),
        motion=motion,
        valid=valid,
        energy=featurizer.energy(wav, T),
        text=hash_text(row.get("question_text"), cfg.text_buckets),
        expression_full=full,
        shape=np.asarray(shape, np.float32).reshape(-1) if shape is not None else np.zeros(0, np.float32),
        fps=fps,
        question_text=str(row.get("question_text") or ""),
        model_id=str(row.get("model_id") or ""),
        split=str(row.get("_split") or ""),
    )


def _open(source: str | os.PathLike, split: str | None, streaming: bool):
    """``datasets`` handle(s) for a local dataset folder / parquet file or a Hub dataset id.

    Local data is always read in streaming mode: rows are consumed once, in order, and the
    ``load_dataset`` Arrow cache of a local folder is keyed by the folder's *name*, so two folders
    called ``ds`` (or an overwritten export) can silently serve stale rows, notably offline
    (``HF_DATASETS_OFFLINE=1``). Streaming reads the files themselves, every time.
    """
    import datasets

    src = str(source)
    p = Path(src).expanduser()
    local = p.exists() or src.startswith(("/", ".", "~"))
    kw: dict[str, Any] = {"streaming": True if local else streaming}
    if p.is_file() and p.suffix == ".parquet":
        ds = datasets.load_dataset("parquet", data_files={"train": src}, **kw)
    elif local:
        if not p.is_dir():
            raise FileNotFoundError(f"dataset folder {p} does not exist")
        ds = datasets.load_dataset(str(p), **kw)
    else:
        ds = datasets.load_dataset(src, **kw)  # Hub id (network only when the user's machine allows it)
    names = sorted(ds.keys())
    want = names if split is None else [s for s in split.split("+")]
    missing = [s for s in want if s not in ds]
    if missing:
        raise ValueError(f"dataset {src}: no split(s) {missing}; it has {names}")
    return [(s, ds[s]) for s in want]


def iter_rows(source: str | os.PathLike, split: str | None = None, streaming: bool = False, batch_size: int = 16) -> Iterator[dict[str, Any]]:
    """Rows of the sample columns the trainer needs, as numpy/python values, in dataset order,
    each with ``_split`` (the dataset split it came from).

    Reads Arrow batches (audio stays undecoded bytes whatever the dataset's features say)."""
    for name, ds in _open(source, split, streaming):
        cols = [c for c in SAMPLE_COLUMNS if c in (ds.column_names or SAMPLE_COLUMNS)]
        for table in ds.select_columns(cols).with_format("arrow").iter(batch_size=batch_size):
            for i in range(table.num_rows):
                row = {c: _cell(table, c, i) for c in cols}
                row["_split"] = name
                yield row


def load_sequences(
    source: str | os.PathLike, cfg: DataConfig, featurizer: LogMel | None = None, rows: Iterable[dict[str, Any]] | None = None
) -> tuple[list[MotionSequence], list[dict[str, str]]]:
    """Decode every usable sample. Returns (sequences, skipped) with ``skipped`` rows
    ``{sample_id, error}``: a bad sample is reported, not fatal."""
    featurizer = featurizer or make_featurizer(cfg)
    base = Path(source) if Path(str(source)).is_dir() else None
    seqs, skipped = [], []
    for n, row in enumerate(rows if rows is not None else iter_rows(source, cfg.split, cfg.streaming)):
        if cfg.max_samples is not None and n >= cfg.max_samples:
            break
        try:
            seqs.append(sequence_from_row(row, cfg, featurizer, base))
        except ValueError as e:
            skipped.append({"sample_id": str(row.get("sample_id")), "error": str(e)})
    if skipped:
        log.warning("%d samples skipped (first: %s)", len(skipped), skipped[0]["error"])
    return seqs, skipped


def make_featurizer(cfg: DataConfig) -> LogMel:
    return LogMel(cfg.sample_rate, cfg.fps, cfg.frames_per_motion_frame, cfg.n_mels, cfg.window_s)


# ---------------------------------------------------------------------------------------------
# identity split and normalisation
# ---------------------------------------------------------------------------------------------


def _id_hash(seed: int, identity: str) -> float:
    h = hashlib.sha1(f"{seed}:{identity}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_identities(identities: Iterable[str], cfg: DataConfig, seed: int) -> tuple[list[str], list[str]]:
    """(train, val) identities. Explicit ``val_identities`` win; otherwise the ``val_fraction`` of
    identities with the smallest seeded hash (at least one when there are two or more)."""
    ids = sorted(set(identities))
    if cfg.val_identities:
        val = [i for i in ids if i in set(cfg.val_identities)]
        unknown = sorted(set(cfg.val_identities) - set(ids))
        if unknown:
            log.warning("data.val_identities not in the data: %s", unknown)
    else:
        n_val = math.ceil(cfg.val_fraction * len(ids)) if cfg.val_fraction > 0 else 0
        if len(ids) >= 2:
            n_val = min(max(n_val, 1 if cfg.val_fraction > 0 else 0), len(ids) - 1)
        else:
            n_val = 0
        val = sorted(sorted(ids, key=lambda i: _id_hash(seed, i))[:n_val])
    return [i for i in ids if i not in set(val)], val


def is_val_identity(identity: str, cfg: DataConfig, seed: int) -> bool:
    """Streaming rule (identities not known up front): explicit list, else hash < val_fraction."""
    if cfg.val_identities:
        return identity in set(cfg.val_identities)
    return _id_hash(seed, identity) < cfg.val_fraction


def is_val_row(identity: str, split: str, cfg: DataConfig, seed: int, val_ids: set[str] | frozenset[str] = frozenset()) -> bool:
    """Validation membership of a streamed row: in ``val_split`` (when set) or of a validation
    identity (known ones, else the hash rule), so no identity ends up on both sides."""
    if identity in val_ids:
        return True
    if cfg.val_split is not None:
        return split == cfg.val_split
    return is_val_identity(identity, cfg, seed)


def _moments(seqs: list[MotionSequence]) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.concatenate([s.motion[s.valid] for s in seqs], 0).astype(np.float64)
    return x.mean(0), x.std(0), len(x)


@dataclass
class NormStats:
    """Motion normalisation per identity (mean/std over valid frames) plus the pooled training
    statistics (fallback for identities without their own) and log-mel feature statistics."""

    identities: list[str]
    mean: np.ndarray
    """``[I, D]``"""
    std: np.ndarray
    """``[I, D]``"""
    global_mean: np.ndarray
    global_std: np.ndarray
    feat_mean: np.ndarray
    """``[M]``"""
    feat_std: np.ndarray

    @staticmethod
    def _floor(std: np.ndarray, gstd: np.ndarray) -> np.ndarray:
        # a dimension that never moves for one identity must not blow up its normalised targets
        return np.maximum(std, np.maximum(0.1 * gstd, 1e-4))

    @classmethod
    def fit(cls, seqs: list[MotionSequence]) -> "NormStats":
        if not seqs:
            raise ValueError("no training sequences to compute normalisation statistics from")
        gm, gs, _ = _moments(seqs)
        ids = sorted({s.identity for s in seqs})
        mean, std = [], []
        for i in ids:
            m, s, _ = _moments([q for q in seqs if q.identity == i])
            mean.append(m)
            std.append(cls._floor(s, gs))
        f = np.concatenate([s.feats for s in seqs], 0).astype(np.float64)
        return cls(
            identities=ids,
            mean=np.asarray(mean, np.float32),
            std=np.asarray(std, np.float32),
            global_mean=gm.astype(np.float32),
            global_std=cls._floor(gs, gs).astype(np.float32),
            feat_mean=f.mean(0).astype(np.float32),
            feat_std=np.maximum(f.std(0), 1e-3).astype(np.float32),
        )

    def for_identity(self, identity: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) ``[D]`` of a training identity, the pooled statistics otherwise."""
        if identity is not None and identity in self.identities:
            i = self.identities.index(identity)
            return self.mean[i], self.std[i]
        return self.global_mean, self.global_std

    def reference(self, seqs: list[MotionSequence]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) estimated from an identity's own sequences (held-out identities)."""
        m, s, _ = _moments(seqs)
        return m.astype(np.float32), self._floor(s, self.global_std).astype(np.float32)

    def to_state(self) -> dict[str, Any]:
        t = torch.as_tensor
        return {
            "identities": list(self.identities), "mean": t(self.mean), "std": t(self.std),
            "global_mean": t(self.global_mean), "global_std": t(self.global_std),
            "feat_mean": t(self.feat_mean), "feat_std": t(self.feat_std),
        }  # fmt: skip

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "NormStats":
        a = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in d.items()}
        return cls(**a)


# ---------------------------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------------------------


def _window(seq: MotionSequence, start: int, W: int, k: int, stats: NormStats, mean_std: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Window ``[start, start+W)`` of a sequence, zero-padded past its end (mask 0 there)."""
    T = seq.n_frames
    end = min(T, start + W)
    n = end - start
    m, s = mean_std if mean_std is not None else stats.for_identity(seq.identity)
    feats = np.zeros((W * k, seq.feats.shape[1]), np.float32)
    feats[: n * k] = (seq.feats[start * k : end * k] - stats.feat_mean) / stats.feat_std
    motion = np.zeros((W, seq.motion.shape[1]), np.float32)
    motion[:n] = (seq.motion[start:end] - m) / s
    mask = np.zeros(W, np.float32)
    mask[:n] = seq.valid[start:end]
    energy = np.zeros(W, np.float32)
    energy[:n] = seq.energy[start:end]
    return {"feats": feats, "motion": motion, "mask": mask, "energy": energy, "text": seq.text}


def collate_windows(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack windows; text ids are right-padded with 0 → ``text [B, L]`` (L ≥ 1)."""
    L = max(1, max(len(it["text"]) for it in items))
    text = np.zeros((len(items), L), np.int64)
    for i, it in enumerate(items):
        text[i, : len(it["text"])] = it["text"]
    out = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("feats", "motion", "mask", "energy")}
    out["text"] = torch.from_numpy(text)
    return out


class WindowDataset(torch.utils.data.Dataset):
    """In-memory windows: item ``(sequence index, start frame)`` → normalised window arrays."""

    def __init__(self, seqs: list[MotionSequence], stats: NormStats, window: int, k: int) -> None:
        self.seqs, self.stats, self.window, self.k = seqs, stats, window, k

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        i, start = key
        return _window(self.seqs[i], start, self.window, self.k, self.stats)


class WindowBatchSampler(torch.utils.data.Sampler):
    """Endless batches of ``(sequence, start)``; batch b depends only on (seed, b).

    Sequences are drawn with probability ∝ their length (every frame equally likely to be seen),
    starts uniformly. ``state_dict()`` is the next batch index; resuming at step s is ``start=s``.
    """

    def __init__(self, lengths: list[int], window: int, batch_size: int, seed: int, start: int = 0) -> None:
        if not lengths:
            raise ValueError("no training sequences: check data.split, data.min_frames and the identity split")
        self.lengths = np.asarray(lengths, np.int64)
        self.p = self.lengths / self.lengths.sum()
        self.window, self.batch_size, self.seed, self.next_batch = window, batch_size, seed, start

    def batch(self, b: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, 0x5A17, b])
        seq = rng.choice(len(self.lengths), size=self.batch_size, p=self.p)
        hi = np.maximum(self.lengths[seq] - self.window, 0) + 1
        starts = (rng.random(self.batch_size) * hi).astype(np.int64)
        return [(int(i), int(s)) for i, s in zip(seq, starts)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        while True:
            b = self.next_batch
            self.next_batch += 1
            yield self.batch(b)

    def __len__(self) -> int:  # endless; DataLoader only needs it for len()
        return 2**62

    def state_dict(self) -> dict[str, int]:
        return {"next_batch": self.next_batch}


class StreamingWindows(torch.utils.data.IterableDataset):
    """Windows from a ``datasets`` stream, deterministic in (seed, position).

    Rows go through a seeded shuffle buffer of raw rows (audio undecoded), each emitted row is decoded
    and cut into ``max(1, T // window)`` random windows. ``skip`` windows are replayed without decoding
    (only frame counts are needed), which is how a resumed run lands on the exact next window.
    Identities for which ``keep(identity)`` is false (validation) are dropped. Single process only
    (``num_workers=0``): the stream itself is the state.
    """

    def __init__(self, rows_fn, cfg: DataConfig, stats: NormStats, featurizer: LogMel, seed: int, keep, skip: int = 0, base_dir=None) -> None:
        super().__init__()
        self.rows_fn, self.cfg, self.stats, self.featurizer = rows_fn, cfg, stats, featurizer
        self.seed, self.keep, self.skip, self.base_dir = seed, keep, skip, base_dir

    def _shuffled(self, epoch: int) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([self.seed, 0x57E4, epoch])
        buf: list[dict[str, Any]] = []
        for row in self.rows_fn():
            if not self.keep(row):
                continue
            buf.append(row)
            if len(buf) >= self.cfg.shuffle_buffer:
                yield buf.pop(int(rng.integers(len(buf))))
        while buf:
            yield buf.pop(int(rng.integers(len(buf))))

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        W, k = self.cfg.window_frames, self.cfg.frames_per_motion_frame
        to_skip, epoch = self.skip, 0
        while True:
            emitted = 0
            for n, row in enumerate(self._shuffled(epoch)):
                T = len(row["expression"]) if row.get("expression") is not None else 0
                if T < self.cfg.min_frames:
                    continue
                n_win = max(1, T // W)
                if to_skip >= n_win:
                    to_skip -= n_win
                    emitted += 1
                    continue
                try:
                    seq = sequence_from_row(row, self.cfg, self.featurizer, self.base_dir)
                except ValueError as e:
                    log.warning("streaming: skipping a sample: %s", e)
                    to_skip = 0
                    continue
                rng = np.random.default_rng([self.seed, 0x5A17, epoch, n])
                starts = (rng.random(n_win) * (max(T - W, 0) + 1)).astype(np.int64)
                for s in starts[to_skip:]:
                    yield _window(seq, int(s), W, k, self.stats)
                to_skip = 0
                emitted += 1
            if emitted == 0:
                raise ValueError("streaming: the dataset has no usable training samples")
            epoch += 1


def sequence_tensors(seq: MotionSequence, stats: NormStats, mean_std: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """A whole sequence as a batch of one (evaluation, prediction)."""
    w = _window(seq, 0, seq.n_frames, seq.feats.shape[0] // max(seq.n_frames, 1), stats, mean_std)
    return collate_windows([w])
