"""Quality metrics of a candidate sample and the filters that reject it (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flameqa.assemble.config import FilterConfig
from flameqa.assemble.pairing import longest_false_run

REASONS: tuple[str, ...] = (
    "too_short",
    "too_long",
    "few_words",
    "low_asr_prob",
    "overlap",
    "face_not_visible",
    "motion_gap",
    "high_nme_mean",
    "high_nme_max",
)
"""Filter reasons, in the order they are checked (a candidate counts under its first failure)."""


@dataclass(frozen=True)
class Metrics:
    """Quality of one candidate answer."""

    duration_s: float
    """Answer span, seconds."""
    n_words: int
    asr_prob_mean: float
    """Mean ASR word probability (NaN without words)."""
    overlap_ratio: float
    """Fraction of the answer span during which another speaker talks."""
    face_visible_ratio: float
    """Valid fitted frames / frames in the answer span."""
    nme_mean: float
    """Mean fit NME over valid frames (NaN when none)."""
    nme_max: float
    max_missing_frames: int
    """Longest run of consecutive span frames without a valid fit."""


def motion_metrics(expected: np.ndarray, frame_idx: np.ndarray, valid: np.ndarray, nme: np.ndarray) -> tuple[float, float, float, int]:
    """(face_visible_ratio, nme_mean, nme_max, max_missing_frames) of a span.

    ``expected``: clip frame indices of the span [E]; ``frame_idx``/``valid``/``nme``: the fitted
    frames that fall in the span [T] (a subset of ``expected``, possibly with holes).
    """
    if expected.size == 0:
        return 0.0, math.nan, math.nan, 0
    ok = np.zeros(expected.size, bool)
    pos = np.searchsorted(expected, frame_idx)
    inside = (pos < expected.size) & (expected[np.minimum(pos, expected.size - 1)] == frame_idx)
    ok[pos[inside]] = np.asarray(valid, bool)[inside]
    good = np.asarray(nme, np.float64)[np.asarray(valid, bool)]
    good = good[np.isfinite(good)]
    nme_mean = float(good.mean()) if good.size else math.nan
    nme_max = float(good.max()) if good.size else math.nan
    return float(ok.mean()), nme_mean, nme_max, longest_false_run(ok)


def reject_reason(m: Metrics, f: FilterConfig) -> str | None:
    """The first filter ``m`` fails (one of ``REASONS``), or None when the candidate is kept."""
    if m.duration_s < f.min_answer_s:
        return "too_short"
    if m.duration_s > f.max_answer_s:
        return "too_long"
    if m.n_words < f.min_words:
        return "few_words"
    if not (m.asr_prob_mean >= f.min_asr_prob_mean):  # NaN fails
        return "low_asr_prob"
    if m.overlap_ratio > f.max_overlap_ratio:
        return "overlap"
    if not (m.face_visible_ratio >= f.min_face_visible_ratio):
        return "face_not_visible"
    if m.max_missing_frames > f.max_missing_frames:
        return "motion_gap"
    if f.max_nme_mean is not None and not (m.nme_mean <= f.max_nme_mean):
        return "high_nme_mean"
    if f.max_nme_max is not None and not (m.nme_max <= f.max_nme_max):
        return "high_nme_max"
    return None
