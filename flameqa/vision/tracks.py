"""Online face tracking: link per-frame faces into tracks, cut tracks into bounded segments.

Per frame, faces are matched to the open tracks by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on a cost mixing box overlap and centre shift, gated
so that a face far from every track starts a new one. A track that misses its face keeps going for
up to ``max_gap_frames``; when the face comes back the missed frames are written with
``detected=False`` and NaN values (marked, never interpolated). A longer absence, or the end of
the clip (shot cuts end clips), closes the track.

New tracks are tentative until they have ``min_track_frames`` detections: a detector blip never
gets a track id, so ids are dense (0, 1, 2, … in order of confirmation). A confirmed track is
emitted in segments of at most ``max_segment_frames`` as soon as each fills up: memory holds at
most one segment per open track, whatever the clip length.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from flameqa.vision.landmarker import FrameFaces, landmark_boxes

log = logging.getLogger(__name__)


@dataclass
class TrackSegment:
    """T consecutive frames of one face track (frames in a gap have ``detected=False`` and NaNs)."""

    track_id: int
    segment: int
    frame_idx: np.ndarray
    """``[T]`` int32 frame index within the clip."""
    detected: np.ndarray
    """``[T]`` bool."""
    det_score: np.ndarray
    """``[T]`` float32, NaN where not detected. Frames the detector skipped carry the track's
    latest score (frames before the track's first score: that first score)."""
    landmarks: np.ndarray
    """``[T, 478, 3]`` float32 pixels (x, y) and relative depth z on the x scale."""
    blendshapes: np.ndarray
    """``[T, 52]`` float32."""
    transform: np.ndarray
    """``[T, 4, 4]`` float32."""
    bbox: np.ndarray
    """``[T, 4]`` float32 landmark box x0, y0, x1, y1 pixels."""
    n_faces: np.ndarray
    """``[T]`` int16 faces seen in the whole frame (0 in a gap frame where none was seen)."""

    @property
    def n(self) -> int:
        return int(self.frame_idx.shape[0])


@dataclass
class _Track:
    key: int
    """Internal id (creation order); ``track_id`` is given on confirmation."""
    track_id: int | None = None
    segment: int = 0
    n_detected: int = 0
    last_frame: int = -1
    last_box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    last_score: float = float("nan")
    # per-frame buffers of the open segment
    frame_idx: list[int] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)
    det_score: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    blendshapes: list[np.ndarray] = field(default_factory=list)
    transform: list[np.ndarray] = field(default_factory=list)
    bbox: list[np.ndarray] = field(default_factory=list)
    n_faces: list[int] = field(default_factory=list)


_NAN_LM = np.full((478, 3), np.nan, np.float32)
_NAN_BS = np.full((52,), np.nan, np.float32)
_NAN_TF = np.full((4, 4), np.nan, np.float32)
_NAN_BOX = np.full((4,), np.nan, np.float32)


class FaceTracker:
    """Feed frames in order with :meth:`update`; call :meth:`finish` at the end of the clip.

    Args:
        on_segment: called with each :class:`TrackSegment` as soon as it is complete.
        max_gap_frames, min_track_frames, max_segment_frames, min_iou, max_center_shift: see
            :class:`flameqa.vision.config.FacesConfig`.
    """

    def __init__(
        self,
        on_segment: Callable[[TrackSegment], None],
        max_gap_frames: int = 25,
        min_track_frames: int = 5,
        max_segment_frames: int = 750,
        min_iou: float = 0.2,
        max_center_shift: float = 0.6,
    ) -> None:
        if max_segment_frames < 1:
            raise ValueError(f"max_segment_frames must be ≥ 1, got {max_segment_frames}")
        self.on_segment = on_segment
        self.max_gap = max(0, int(max_gap_frames))
        self.min_frames = max(1, int(min_track_frames))
        self.max_seg = int(max_segment_frames)
        self.min_iou = float(min_iou)
        self.max_shift = float(max_center_shift)
        self._open: list[_Track] = []
        self._next_key = 0
        self._next_id = 0
        self.dropped = 0
        """Tentative tracks that ended before ``min_track_frames`` detections."""
        self.max_faces_seen = 0

    # -- matching -------------------------------------------------------------------------
    def _cost(self, boxes: np.ndarray) -> np.ndarray:
        """Cost ``[tracks, faces]``: (1 - IoU) + centre shift / face size; gated pairs are inf.

        Plain Python floats: there are a handful of tracks and faces per frame, and numpy's
        per-call overhead on 1×1 arrays would cost more than the landmark conversion.
        """
        cost = np.full((len(self._open), len(boxes)), np.inf)
        for r, t in enumerate(self._open):
            a0, a1, a2, a3 = (float(v) for v in t.last_box)
            for c, b in enumerate(boxes.tolist()):
                b0, b1, b2, b3 = b
                iw = max(0.0, min(a2, b2) - max(a0, b0))
                ih = max(0.0, min(a3, b3) - max(a1, b1))
                inter = iw * ih
                union = max(0.0, a2 - a0) * max(0.0, a3 - a1) + max(0.0, b2 - b0) * max(0.0, b3 - b1) - inter
                iou = inter / union if union > 0 else 0.0
                size = max(a2 - a0, a3 - a1, b2 - b0, b3 - b1, 1e-6)
                shift = math.hypot((a0 + a2 - b0 - b2) / 2, (a1 + a3 - b1 - b3) / 2) / size
                if iou >= self.min_iou or shift <= self.max_shift:
                    cost[r, c] = (1.0 - iou) + shift
        return cost

    def update(self, frame: int, faces: FrameFaces) -> None:
        """Add the faces of clip frame ``frame`` (frames must come in increasing order)."""
        from scipy.optimize import linear_sum_assignment

        # close tracks whose face has been gone too long (before matching: a face far in time is
        # a new track even if it reappears at the same place)
        for t in [t for t in self._open if frame - t.last_frame > self.max_gap + 1]:
            self._close(t)
        self.max_faces_seen = max(self.max_faces_seen, faces.n)
        if faces.n == 0:
            return
        boxes = landmark_boxes(faces.landmarks)
        assigned = np.full(faces.n, -1)
        if self._open:
            cost = self._cost(boxes)
            finite = np.where(np.isfinite(cost), cost, 1e9)
            rows, cols = linear_sum_assignment(finite)
            for r, c in zip(rows, cols):
                if np.isfinite(cost[r, c]):
                    assigned[c] = r
        tracks = list(self._open)
        for i in range(faces.n):
            if assigned[i] >= 0:
                t = tracks[assigned[i]]
            else:
                t = _Track(key=self._next_key)
                self._next_key += 1
                self._open.append(t)
            self._append(t, frame, faces, i, boxes[i])

    def finish(self) -> None:
        """End of clip: close every open track."""
        for t in list(self._open):
            self._close(t)

    # -- buffers --------------------------------------------------------------------------
    def _append(self, t: _Track, frame: int, faces: FrameFaces, i: int, box: np.ndarray) -> None:
        if t.last_frame >= 0:
            for g in range(t.last_frame + 1, frame):  # the gap: marked, not invented
                self._push(t, g, False, np.nan, _NAN_LM, _NAN_BS, _NAN_TF, _NAN_BOX, 0)
        self._push(t, frame, True, float(faces.det_score[i]), faces.landmarks[i], faces.blendshapes[i], faces.transform[i], box.astype(np.float32), faces.n)
        t.last_frame = frame
        t.last_box = box
        t.n_detected += 1
        if t.track_id is None and t.n_detected >= self.min_frames:
            t.track_id = self._next_id
            self._next_id += 1
        if t.track_id is not None:
            while len(t.frame_idx) >= self.max_seg:
                self._emit(t, self.max_seg)

    @staticmethod
    def _push(t: _Track, frame: int, det: bool, score: float, lm, bs, tf, box, n_faces: int) -> None:
        t.frame_idx.append(frame)
        t.detected.append(det)
        t.det_score.append(score)
        t.landmarks.append(lm)
        t.blendshapes.append(bs)
        t.transform.append(tf)
        t.bbox.append(box)
        t.n_faces.append(n_faces)

    def _emit(self, t: _Track, n: int) -> None:
        det = np.asarray(t.detected[:n], bool)
        score = np.asarray(t.det_score[:n], np.float32)
        # detected frames the detector skipped (NaN): hold the latest score; before the first
        # score of the track, take the first one (it is at most det_score_every frames away)
        for j in np.flatnonzero(det):
            if np.isnan(score[j]):
                score[j] = t.last_score
            else:
                t.last_score = float(score[j])
        lead = det & np.isnan(score)
        if lead.any():
            later = [x for d, x in zip(t.detected[n:], t.det_score[n:]) if d and not np.isnan(x)]
            first = score[det & ~np.isnan(score)]
            fill = first[0] if first.size else (later[0] if later else np.nan)
            score[lead] = fill
        seg = TrackSegment(
            track_id=int(t.track_id),  # type: ignore[arg-type]
            segment=t.segment,
            frame_idx=np.asarray(t.frame_idx[:n], np.int32),
            detected=det,
            det_score=score,
            landmarks=np.stack(t.landmarks[:n]).astype(np.float32, copy=False),
            blendshapes=np.stack(t.blendshapes[:n]).astype(np.float32, copy=False),
            transform=np.stack(t.transform[:n]).astype(np.float32, copy=False),
            bbox=np.stack(t.bbox[:n]).astype(np.float32, copy=False),
            n_faces=np.asarray(t.n_faces[:n], np.int16),
        )
        for name in ("frame_idx", "detected", "det_score", "landmarks", "blendshapes", "transform", "bbox", "n_faces"):
            del getattr(t, name)[:n]
        t.segment += 1
        self.on_segment(seg)

    def _close(self, t: _Track) -> None:
        self._open.remove(t)
        if t.track_id is None:
            self.dropped += 1
            log.debug("dropped a tentative track with %d detections (< %d)", t.n_detected, self.min_frames)
            return
        if t.frame_idx:
            self._emit(t, len(t.frame_idx))
