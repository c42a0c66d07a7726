"""Active speaker: which face track is each diarized speaker?

For every (speaker, track) pair of a clip the score is the Pearson correlation, over the frames
where the track's face was detected, between

* the track's mouth activity (rolling std of mouth opening, :func:`flameqa.vision.mouth.mouth_activity`) and
* the speaker's voice activity (1 inside the speaker's turns, 0 outside), smoothed by the same window.

The person who talks moves their mouth when their voice is on and keeps it still when it is off,
so their pair scores high; a listener's mouth does not follow that voice (around 0 or negative).
A correlation says nothing about size, though: an idle face's millimetre jitter can line up with
a voice by chance. So the score is the correlation times ``min(1, a_on / talk_activity)``, where
``a_on`` is the median mouth activity while the voice is on: a face that barely moves then cannot
be that voice's speaker, a face that moves like a talking one keeps its full correlation.
Speakers are then assigned to tracks one-to-one maximising the total score (Hungarian), and a
pair scoring below ``min_score`` is refused: the speaker is off camera (track -1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from flameqa.vision.mouth import mouth_activity, rolling


@dataclass
class TrackSignal:
    """One face track of a clip over time (its segments concatenated)."""

    track_id: int
    times: np.ndarray
    """``[T]`` seconds from video start of each frame."""
    opening: np.ndarray
    """``[T]`` mouth opening (NaN where the face was not detected)."""


def voice_activity(turns: Sequence[tuple[float, float]], times: np.ndarray) -> np.ndarray:
    """``[T]`` float: 1 where any turn ``(start_s, end_s)`` covers the time, else 0."""
    times = np.asarray(times, np.float64)
    v = np.zeros(times.shape, np.float64)
    for a, b in turns:
        v[(times >= a) & (times < b)] = 1.0
    return v


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two ``[T]`` series over the frames where both are finite; NaN if undefined."""
    m = np.isfinite(a) & np.isfinite(b)
    if m.sum() < 3:
        return float("nan")
    a, b = a[m] - a[m].mean(), b[m] - b[m].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


def score_matrix(
    tracks: Sequence[TrackSignal],
    speakers: Mapping[str, Sequence[tuple[float, float]]],
    fps: float,
    window_s: float = 0.5,
    min_overlap_s: float = 1.0,
    talk_activity: float = 0.02,
) -> np.ndarray:
    """Scores ``[S, K]`` (speakers in ``speakers`` order × ``tracks``); NaN = not comparable.

    A pair is not comparable when the speaker talks for less than ``min_overlap_s`` while the
    track's face is visible, or never pauses then (a constant signal has no correlation).
    """
    n = int(round(window_s * fps)) | 1
    names = list(speakers)
    out = np.full((len(names), len(tracks)), np.nan)
    for k, tr in enumerate(tracks):
        act = mouth_activity(tr.opening, fps, window_s)
        seen = np.isfinite(act)
        for s, name in enumerate(names):
            v = voice_activity(speakers[name], tr.times)
            on = seen & (v > 0)
            if on.sum() / fps < min_overlap_s:
                continue
            size = min(1.0, float(np.median(act[on])) / talk_activity) if talk_activity > 0 else 1.0
            out[s, k] = pearson(act, rolling(v, n, "mean")) * size
    return out


def assign(scores: np.ndarray, min_score: float) -> np.ndarray:
    """Track index per speaker ``[S]`` (-1: none) from ``scores [S, K]``, one-to-one, best total."""
    from scipy.optimize import linear_sum_assignment

    S, K = scores.shape
    res = np.full(S, -1)
    if S == 0 or K == 0:
        return res
    ok = np.isfinite(scores) & (scores >= min_score)
    cost = np.where(ok, -scores, 1e6)
    rows, cols = linear_sum_assignment(cost)
    for r, c in zip(rows, cols):
        if ok[r, c]:
            res[r] = c
    return res
