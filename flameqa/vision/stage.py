"""The face stages.

* :class:`FacesStage` (``clips`` → ``faces``): streams each clip's frames, runs MediaPipe's
  FaceLandmarker on every frame, links faces into tracks and writes one row per track segment.
  A clip without any face gives one ``status="no_face"`` row (track_id -1, empty arrays); a clip
  that cannot be decoded gives a ``status="failed"`` row with the reason.
* :class:`SpeakersStage` (``faces`` + ``speech`` → ``speakers_faces``): maps each diarized speaker
  of a clip to the face track whose mouth moves with their voice (or to -1, off camera).

Both are built from their config alone (the local executor builds them in spawned worker
processes); the FaceLandmarker bundle is read once per stage object.

Clips in parallel: the clips of a batch are landmarked by this process and the helpers of an
:class:`~flameqa.stages.pool.InnerPool` (``runner.inner_processes``, default the CPUs, when the
stage runs in the main process), so one long video (one shard) still occupies every core; rows
come back in clip order, so the output does not depend on the number of processes (tested).
A shot longer than 1.5 × ``faces.piece_s`` is landmarked in pieces that the processes share
(:func:`split_pieces`): a one-shot hour is otherwise one process's work. Each piece starts its
own MediaPipe tracking; :func:`join_pieces` gives the tracks that cross a boundary their id back
(on the GRID test: the same frames in one track, landmarks 0.05 px from one pass on average).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa

from flameqa.stages.base import Stage, StageContext
from flameqa.vision.config import FacesConfig, SpeakersConfig

log = logging.getLogger(__name__)

#: Flags a ``faces`` row may carry (documented in schemas/v1/faces.yaml).
FLAGS = ("small_face", "profile", "many_faces", "gaps", "black_frames", "all_black", "downscaled", "rotated", "short_tracks")


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def detection_size(width: int, height: int, max_side: int) -> tuple[int, int] | None:
    """(w, h) to decode frames at so the longer side is ≤ ``max_side`` (None: keep full size)."""
    if max(width, height) <= max_side:
        return None
    s = max_side / max(width, height)
    return _even(width * s), _even(height * s)


def decode_geometry(width: int, height: int, rotation: int, max_side: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None, tuple[int, int]]:
    """Sizes for decoding a clip whose upright frames are ``width × height``: (the upright size to
    detect at, None for full size; that size as the decoder must scale the stored, not yet rotated,
    frame; the stored frame's (w, h))."""
    size = detection_size(width, height, max_side) if width and height else None
    turned = rotation in (90, 270)
    dec_size = None if size is None else (size[::-1] if turned else size)
    return size, dec_size, ((height, width) if turned else (width, height))


def decode_frames(
    path: str, fps: float, start_s: float, end_s: float | None, rotation: int, size: tuple[int, int] | None, stored: tuple[int, int],
    threads: int = 0,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(idx, t, image)`` like :func:`flameqa.io.media.iter_frames`: upright RGB ``[H, W, 3]`` uint8.

    Frames are taken from the decoder as YUV 4:2:0 and converted by OpenCV: at 720p that is ~1 ms
    of CPU per frame less than FFmpeg's RGB conversion (2.4 vs 3.4 ms decode + convert), which
    is ~10 % of a MediaPipe frame. The display rotation is then undone here, with the reader's
    convention. Odd frame sizes (no 4:2:0 layout) take the reader's RGB path.

    Args:
        size: (w, h) to scale the stored (not yet rotated) frame to; None keeps it.
        stored: (w, h) of the stored frame, to check that a 4:2:0 layout exists.
        threads: decoder threads (0: one per core).
    """
    for _, idx, t, img in decode_windows(path, fps, [(start_s, end_s)], rotation, size, stored, threads):
        yield idx, t, img


def decode_windows(
    path: str, fps: float, windows: list[tuple[float, float | None]], rotation: int, size: tuple[int, int] | None,
    stored: tuple[int, int], threads: int = 0,
) -> Iterator[tuple[int, int, float, np.ndarray]]:
    """:func:`decode_frames` of several windows in one decoding pass (``(k, idx, t, image)``, see
    :func:`flameqa.io.media.iter_windows`)."""
    from flameqa.io.media import iter_windows

    w, h = size or stored
    if w % 2 or h % 2:
        yield from iter_windows(path, windows, fps=fps, rotation=rotation, size=size, threads=threads)
        return
    import cv2

    # the reader's own rotation helper, so both paths share one convention
    from flameqa.io.media import upright

    for k, idx, t, yuv in iter_windows(path, windows, fps=fps, rotation=0, size=size, fmt="yuv420p", threads=threads):
        yield k, idx, t, upright(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420), rotation)


class _Prefetch:
    """Decode frames in a background thread, a few frames ahead (bounded queue = bounded memory).

    PyAV releases the GIL while decoding and converting, and MediaPipe's calls run in C without
    it, so decoding the next frame overlaps with landmarking this one.
    """

    _END = object()

    def __init__(self, frames: Iterator[tuple[int, float, np.ndarray]], depth: int = 4) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(frames,), name="faces-decode", daemon=True)
        self._t.start()

    def _run(self, frames: Iterator[tuple[int, float, np.ndarray]]) -> None:
        try:
            for item in frames:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self._put(e)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless the consumer has stopped (then False)."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=10)


class _RunFrames:
    """One decoding pass over a run of clips (``(k, idx, t, image)`` items), handed out clip by clip."""

    def __init__(self, items: Iterator[tuple[int, int, float, np.ndarray]]) -> None:
        self._it = iter(items)
        self._head: tuple[int, int, float, np.ndarray] | None = None
        self.ended = False
        """The pass ended (end of file, decode error): later clips get no frames from it."""

    def window(self, k: int) -> Iterator[tuple[int, float, np.ndarray]]:
        """The frames of clip ``k`` (those of earlier clips that were not taken are skipped)."""
        while True:
            if self._head is None:
                if self.ended:
                    return
                try:
                    self._head = next(self._it)
                except StopIteration:
                    self.ended = True
                    return
                except BaseException:
                    self.ended = True
                    raise
            kk, idx, t, img = self._head
            if kk > k:
                return
            self._head = None
            if kk == k:
                yield idx, t, img


class _Sink:
    """Collects a clip's output rows; past ``limit`` bytes they go to a memory-mapped Arrow file.

    The runner wants the clip's rows back as one table. Kept in RAM, an hour of one face is
    ~0.5 GB of landmarks; spooled, the returned table's buffers are file-backed pages the OS can
    drop and re-read, so the process's memory stays flat. The file is unlinked as soon as it is
    mapped (the mapping keeps it alive until the table is gone).
    """

    def __init__(self, schema: pa.Schema, limit: int, tmp_dir: Path) -> None:
        self.schema = schema
        self.limit = limit
        self.tmp_dir = tmp_dir
        self._parts: list[pa.Table] = []
        self._bytes = 0
        self._writer: Any = None
        self._path: Path | None = None
        self.rows = 0

    def add(self, t: pa.Table) -> None:
        self.rows += t.num_rows
        if self._writer is None and self._bytes + t.nbytes > self.limit:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".faces-", suffix=".arrow", dir=self.tmp_dir)
            os.close(fd)
            self._path = Path(name)
            self._writer = pa.ipc.new_file(str(self._path), self.schema)
            for p in self._parts:
                self._writer.write_table(p)
            self._parts.clear()
            log.info("faces: spooling output rows to %s (over %d MB)", self._path, self.limit >> 20)
        if self._writer is not None:
            self._writer.write_table(t)
        else:
            self._parts.append(t)
            self._bytes += t.nbytes

    def finish(self) -> pa.Table:
        if self._writer is None:
            return pa.concat_tables(self._parts) if self._parts else self.schema.empty_table()
        self._writer.close()
        try:
            return pa.ipc.open_file(pa.memory_map(str(self._path))).read_all()
        finally:
            self._path.unlink(missing_ok=True)  # type: ignore[union-attr]

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._path.unlink(missing_ok=True)  # type: ignore[union-attr]
        self._parts.clear()


def join_table(table: pa.Table, split: dict[str, int], max_gap: int, min_iou: float) -> pa.Table:
    """``faces`` rows with the clips landmarked in pieces (``split``: clip id → frames per piece)
    joined by :func:`join_pieces`. Only the light columns are read into Python; the rows are
    reassembled from zero-copy slices, so landmarks that came back spooled stay file-backed. A
    clip's rows are together in ``table`` (pieces in order); a joined clip's come out in piece,
    track, segment order, the others as they are."""
    light = table.select(["clip_id", "status", "track_id", "segment", "frame_idx", "detected", "bbox", "flags"]).to_pylist()
    keep: list[int] = []
    track, segment, flags = ([r[c] for r in light] for c in ("track_id", "segment", "flags"))
    i = 0
    while i < len(light):
        clip = light[i]["clip_id"]
        j = i
        while j < len(light) and light[j]["clip_id"] == clip:
            j += 1
        if clip in split:
            for r in join_pieces([dict(r, i=q) for q, r in enumerate(light[i:j], i)], split[clip], max_gap, min_iou):
                keep.append(r["i"])
                track[r["i"]], segment[r["i"]], flags[r["i"]] = r["track_id"], r["segment"], r["flags"]
        else:
            keep += range(i, j)
        i = j
    for name, values in (("track_id", track), ("segment", segment), ("flags", flags)):
        k = table.schema.get_field_index(name)
        table = table.set_column(k, table.schema.field(k), pa.array(values, table.schema.field(k).type))
    # consecutive kept rows as one slice each
    spans: list[tuple[int, int]] = []
    for q in keep:
        if spans and spans[-1][0] + spans[-1][1] == q:
            spans[-1] = (spans[-1][0], spans[-1][1] + 1)
        else:
            spans.append((q, 1))
    return pa.concat_tables([table.slice(a, n) for a, n in spans]) if spans else table.slice(0, 0)


def _duration(clip: Mapping[str, Any]) -> float:
    """Seconds of a ``clips`` row (0 when unknown)."""
    return max(0.0, float(clip.get("end_s") or 0.0) - float(clip.get("start_s") or 0.0))


def clip_runs(clips: list[dict[str, Any]], parts: int = 1, max_gap_s: float = 0.5) -> list[list[dict[str, Any]]]:
    """``clips`` (in order) cut into runs that one decoding pass can serve: consecutive clips of one
    video with the same frame rate, size and rotation, each starting within ``max_gap_s`` of the
    previous one's end (decoding through a short gap is cheaper than a seek). Runs are then cut
    further, by duration, so that there are about ``parts`` pieces to spread over processes.
    Clips that are not ``ok`` stand alone. Concatenated, the runs are ``clips`` again."""
    runs: list[list[dict[str, Any]]] = []
    key = None
    for c in clips:
        k = (c.get("path"), c.get("fps"), c.get("width"), c.get("height"), c.get("rotation"))
        prev = runs[-1][-1] if runs else None
        joins = (
            prev is not None and key == k and c.get("status", "ok") == "ok" and prev.get("status", "ok") == "ok"
            and prev.get("end_s") is not None and c.get("start_s") is not None
            and 0.0 <= float(c["start_s"]) - float(prev["end_s"]) <= max_gap_s
        )
        if joins:
            runs[-1].append(c)
        else:
            runs.append([c])
        key = k
    # a run is cut when it holds more than its share of the duration, however many runs there are
    # (a long shot's pieces make one run beside a few short clips)
    total = sum(_duration(c) for r in runs for c in r) or 1.0
    out: list[list[dict[str, Any]]] = []
    for r in runs:
        n = min(len(r), max(1, round(parts * sum(_duration(c) for c in r) / total)))
        if n == 1:
            out.append(r)
            continue
        # each clip to the n-th of the run's duration its middle falls in: six equal clips in four
        # parts make 1-2-1-2 (two processes: 3 and 3), where closing a part once it held an n-th
        # made 2-2-2 (two processes: 4 and 2)
        span, acc = sum(_duration(c) for c in r) or 1.0, 0.0
        parts_of: dict[int, list[dict[str, Any]]] = {}
        for c in r:
            parts_of.setdefault(min(n - 1, int(n * (acc + _duration(c) / 2) / span)), []).append(c)
            acc += _duration(c)
        out += parts_of.values()
    return out


def split_pieces(clip: dict[str, Any], piece_s: float) -> list[dict[str, Any]]:
    """``clip`` as pieces of about ``piece_s`` seconds on its frame grid (see ``faces.piece_s``), or
    ``[clip]``. A piece is the clip's row with its own ``start_s``/``end_s`` and private keys:
    ``_frame0`` (its first frame's index in the clip), ``_piece_frames`` (frames per piece) and
    ``_clip_start_s``."""
    start, end, fps = clip.get("start_s"), clip.get("end_s"), float(clip.get("fps") or 0.0)
    if piece_s <= 0 or clip.get("status", "ok") != "ok" or start is None or end is None or fps <= 0:
        return [clip]
    frames = int(math.ceil((float(end) - float(start)) * fps - 1e-6))
    n = int(round(frames / (piece_s * fps)))
    if frames < 1.5 * piece_s * fps:  # also makes n ≥ 2
        return [clip]
    per = -(-frames // n)
    pieces = []
    for k in range(n):
        a = k * per
        if a >= frames:
            break
        pieces.append(dict(
            clip, start_s=float(start) + a / fps, end_s=float(end) if k == n - 1 else float(start) + (a + per) / fps,
            _frame0=a, _piece_frames=per, _clip_start_s=float(start),
        ))
    return pieces


def join_pieces(rows: list[dict[str, Any]], piece_frames: int, max_gap: int, min_iou: float) -> list[dict[str, Any]]:
    """The ``faces`` rows of one clip landmarked in pieces of ``piece_frames`` frames, as one clip's.

    ``rows``: the pieces' rows in order, each with at least ``status``, ``track_id``, ``segment``,
    ``frame_idx``, ``detected``, ``bbox`` and ``flags``. Returns the rows to keep, in order, updated.

    A track of a piece continues the previous piece's track when its first detected frame comes at
    most ``max_gap`` frames after that track's last one (the tracker's rule in one pass) and their
    boxes across the boundary overlap by ``min_iou`` (one-to-one, most overlap first): it takes
    that track's ``track_id`` and numbers its segments on. Other tracks get new ids. A failed piece
    fails the clip (as a decode error does in one pass); pieces without faces leave no row unless
    no piece has any. Unlike one pass, the frames of a gap that spans a boundary are not written
    as undetected frames, and a face seen for fewer than ``min_track_frames`` frames just before a
    boundary is dropped as a short track of its piece.
    """
    from scipy.optimize import linear_sum_assignment

    from flameqa.vision.landmarker import box_iou

    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        return failed[:1]
    seg_rows = [r for r in rows if r["status"] == "ok" and len(r["frame_idx"])]
    if not seg_rows:
        if not rows:
            return []
        flags = list(dict.fromkeys(f for r in rows for f in r["flags"]))
        if "all_black" in flags and not all("all_black" in r["flags"] for r in rows):
            flags = list(dict.fromkeys("black_frames" if f == "all_black" else f for f in flags))
        return [dict(rows[0], flags=flags)]

    def edge(r: dict[str, Any], last: bool) -> tuple[int, np.ndarray]:
        """(frame, box) of the row's last (first) detected frame."""
        det = np.flatnonzero(np.asarray(r["detected"], bool))
        i = int(det[-1] if last else det[0]) if det.size else (len(r["frame_idx"]) - 1 if last else 0)
        return int(r["frame_idx"][i]), np.asarray(r["bbox"], np.float64).reshape(-1, 4)[i]

    by_piece: dict[int, dict[int, list[dict[str, Any]]]] = {}
    for r in seg_rows:
        by_piece.setdefault(int(r["frame_idx"][0]) // piece_frames, {}).setdefault(int(r["track_id"]), []).append(r)
    out: list[dict[str, Any]] = []
    prev: dict[int, tuple[int, int, np.ndarray]] = {}  # id -> (last segment, last detected frame, its box)
    next_id = 0
    for k in sorted(by_piece):
        tracks = {t: sorted(rs, key=lambda r: int(r["segment"])) for t, rs in sorted(by_piece[k].items())}
        starts = {t: edge(rs[0], False) for t, rs in tracks.items()}
        old, new = list(prev), list(tracks)
        ids: dict[int, int] = {}
        if old and new:
            iou = box_iou(np.stack([starts[t][1] for t in new]), np.stack([prev[g][2] for g in old]))
            # as in one pass: a track survives at most max_gap frames without its face
            gap = np.array([[starts[t][0] - prev[g][1] - 1 for g in old] for t in new])
            iou[gap > max_gap] = 0.0
            for i, j in zip(*linear_sum_assignment(-iou)):
                if iou[i, j] >= min_iou:
                    ids[new[i]] = old[j]
        current: dict[int, tuple[int, int, np.ndarray]] = {}
        for t, rs in tracks.items():
            g = ids.get(t)
            first = prev[g][0] + 1 if g is not None else 0
            if g is None:
                g, next_id = next_id, next_id + 1
            out += [dict(r, track_id=g, segment=first + int(r["segment"])) for r in rs]
            f, box = edge(rs[-1], True)
            current[g] = (first + int(rs[-1]["segment"]), f, box)
        prev = current
    return out


class FacesStage(Stage):
    """``clips`` → ``faces``: per clip, stream frames → FaceLandmarker → tracks → segment rows.

    Frames are decoded at ``faces.landmarker.max_side`` at most (4K is downscaled by the decoder,
    coordinates are mapped back), upright (the reader undoes the display rotation). Memory per
    clip is one open segment per track plus the spooled output (see ``faces.spool_mb``).
    """

    name = "faces"
    input_table = "clips"
    output_tables = ("faces",)

    @classmethod
    def check(cls, config: FacesConfig) -> None:
        from flameqa.vision.landmarker import resolve_bundle

        resolve_bundle(config.landmarker)

    def __init__(self, config: FacesConfig, ctx: StageContext) -> None:
        super().__init__(config, ctx)
        from flameqa.vision.landmarker import FaceLandmarker

        self.config: FacesConfig = config
        if config.opencv_threads > 0:
            import cv2

            cv2.setNumThreads(config.opencv_threads)
        self.landmarker = FaceLandmarker(config.landmarker)
        self._stats = {"clips": 0, "frames": 0, "black_frames": 0, "dropped_tracks": 0, "segments": 0, "seconds": 0.0}
        from flameqa.stages.pool import InnerPool

        # helpers' outputs travel as mapped files, whatever their size: spooled pieces stay file-backed
        # here too (pickled, an hour of pieces would meet in this process's memory)
        self.inner = InnerPool(self, InnerPool.processes_of(ctx), ship_bytes=0)

    # -- rows -----------------------------------------------------------------------------
    @staticmethod
    def _base(clip: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            clip_id=clip["clip_id"], video_id=clip.get("video_id"), fps=float(clip.get("fps") or 25.0),
            image_width=int(clip.get("width") or 0), image_height=int(clip.get("height") or 0),
            clip_start_s=float(clip.get("_clip_start_s", clip.get("start_s")) or 0.0),  # a piece: its clip's
        )

    @classmethod
    def _empty_row(cls, clip: Mapping[str, Any], status: str, error: str | None, flags: list[str]) -> dict[str, Any]:
        # empty Python lists, not (0, N) arrays: schema.to_arrow cannot reshape a 0-row array
        return dict(
            cls._base(clip), track_id=-1, segment=0, frame_idx=[], detected=[], det_score=[], landmarks=[],
            blendshapes=[], transform=[], bbox=[], mouth_open=[], flags=flags, status=status, error=error,
        )

    def _segment_row(self, base: dict[str, Any], seg, clip_flags: list[str], black: list[int]) -> dict[str, Any]:
        from flameqa.vision.mouth import mouth_open
        from flameqa.vision.pose import head_angles

        cfg = self.config
        det = seg.detected
        flags = list(clip_flags)
        size = (seg.bbox[det, 2:] - seg.bbox[det, :2]).max(axis=1)
        if size.size and float(np.median(size)) < cfg.min_face_px:
            flags.append("small_face")
        yaw = np.abs(head_angles(seg.transform[det])[:, 0])
        if yaw.size and float(np.mean(yaw > cfg.profile_yaw_deg)) >= 0.5:
            flags.append("profile")
        if int(seg.n_faces.max(initial=0)) >= cfg.many_faces:
            flags.append("many_faces")
        if not det.all():
            flags.append("gaps")
        lo = bisect.bisect_left(black, int(seg.frame_idx[0]))
        if lo < len(black) and black[lo] <= int(seg.frame_idx[-1]):
            flags.append("black_frames")
        return dict(
            base, track_id=seg.track_id, segment=seg.segment, frame_idx=seg.frame_idx, detected=det,
            det_score=seg.det_score, landmarks=seg.landmarks.reshape(seg.n, -1), blendshapes=seg.blendshapes,
            transform=seg.transform.reshape(seg.n, 16), bbox=seg.bbox, mouth_open=mouth_open(seg.landmarks),
            flags=flags, status="ok", error=None,
        )

    # -- one clip -------------------------------------------------------------------------
    def process_clip(self, clip: Mapping[str, Any], frames: Iterator[tuple[int, float, np.ndarray]] | None = None) -> pa.Table:
        """All ``faces`` rows of one ``clips`` row (streams its frames; see the module docstring).

        ``frames``: the clip's decoded frames from a pass shared with other clips (see
        :meth:`process_run`); by default the clip decodes its own."""
        from flameqa.io.media import MediaError
        from flameqa.io.schema import conform, load_schema
        from flameqa.vision.landmarker import FrameFaces, dedupe
        from flameqa.vision.tracks import FaceTracker

        cfg = self.config
        if clip.get("status", "ok") != "ok":
            return conform("faces", [self._empty_row(clip, "skipped", f"clip status is {clip.get('status')!r}", [])])
        t0 = time.perf_counter()
        base = self._base(clip)
        frame0 = int(clip.get("_frame0", 0))  # a piece of a longer clip (split_pieces): the clip's frame numbers
        fps = base["fps"]
        rotation = int(clip.get("rotation") or 0) % 360
        W, H = base["image_width"], base["image_height"]
        # iter_frames scales the stored frame, then rotates it upright: give it the stored shape
        size, dec_size, stored = decode_geometry(W, H, rotation, cfg.landmarker.max_side)
        clip_flags: list[str] = []
        if size is not None:
            clip_flags.append("downscaled")
        if rotation:
            clip_flags.append("rotated")
        # a piece's rows always go to a file: an hour in 30 s pieces never reaches spool_mb per piece,
        # and kept in RAM its ~0.5 GB per face would all meet in this process
        sink = _Sink(load_schema("faces").arrow, 0 if "_piece_frames" in clip else cfg.spool_mb << 20, Path(self.ctx.out) / "tmp")
        black: list[int] = []
        no_faces = FrameFaces.empty()

        def on_segment(seg) -> None:
            sink.add(conform("faces", [self._segment_row(base, seg, clip_flags, black)]))

        tracker = FaceTracker(
            on_segment, cfg.max_gap_frames, cfg.min_track_frames, cfg.max_segment_frames, cfg.min_iou, cfg.max_center_shift
        )
        n = 0
        pre = None
        if frames is None:
            frames = pre = _Prefetch(decode_frames(
                clip["path"], fps, float(clip["start_s"]), clip.get("end_s"), rotation, dec_size, stored, self.config.decode_threads))
        self.landmarker.start_clip()
        try:
            for idx, _t, img in frames:
                idx += frame0
                if n == 0 and size is None and img.shape[:2] != (H, W):
                    W, H = img.shape[1], img.shape[0]  # trust the decoded frames over the clip's metadata
                    base.update(image_width=W, image_height=H)
                n += 1
                # mean luma of a sparse grid of pixels: cheap, and enough to tell black from content
                if float(img[::16, ::16].mean()) < cfg.black_luma:
                    black.append(idx)
                    tracker.update(idx, no_faces)
                    continue
                faces = dedupe(self.landmarker.detect(img, int(round(idx * 1000.0 / fps)), full_size=(W, H)))
                tracker.update(idx, faces)
            tracker.finish()
        except MediaError as e:
            sink.discard()
            return conform("faces", [self._empty_row(clip, "failed", str(e), clip_flags)])
        except BaseException:
            sink.discard()
            raise
        finally:
            if pre is not None:
                pre.close()
        self._stats["clips"] += frame0 == 0
        self._stats["frames"] += n
        self._stats["black_frames"] += len(black)
        self._stats["dropped_tracks"] += tracker.dropped
        self._stats["segments"] += sink.rows
        self._stats["seconds"] += time.perf_counter() - t0
        if n == 0:
            if frame0:  # a later piece past the video's last frame: the clip simply ended earlier
                return conform("faces", [])
            return conform("faces", [self._empty_row(clip, "failed", "no frames decoded in [start_s, end_s)", clip_flags)])
        if sink.rows == 0:
            flags = list(clip_flags)
            if black:
                flags.append("all_black" if len(black) == n else "black_frames")
            if tracker.dropped:
                flags.append("short_tracks")
            return conform("faces", [self._empty_row(clip, "no_face", None, flags)])
        log.debug("%s: %d frames, %d segments, %d black", clip["clip_id"], n, sink.rows, len(black))
        return sink.finish()

    def process_run(self, clips: list[Mapping[str, Any]]) -> pa.Table:
        """The ``faces`` rows of clips that follow each other in one video (see :func:`clip_runs`),
        decoded in one pass: one seek for the run, not one per clip (a seek decodes again from the
        keyframe before the clip; on a 60 s 720p video cut every 3-6 s that was 40 % more decoding).
        The frames are the same as each clip's own decode (tested). A clip the shared pass did not
        reach (it ended early on a decode error) decodes on its own, as it would have alone."""
        if len(clips) == 1:
            return self.process_clip(clips[0])
        c0 = clips[0]
        rotation = int(c0.get("rotation") or 0) % 360
        _, dec_size, stored = decode_geometry(int(c0.get("width") or 0), int(c0.get("height") or 0), rotation, self.config.landmarker.max_side)
        windows = [(float(c["start_s"]), c.get("end_s")) for c in clips]
        pre = _Prefetch(decode_windows(c0["path"], float(c0.get("fps") or 25.0), windows, rotation, dec_size, stored, self.config.decode_threads))
        run = _RunFrames(pre)
        parts = []
        try:
            for k, clip in enumerate(clips):
                before = self._stats["frames"]
                table = self.process_clip(clip, run.window(k))
                if run.ended and self._stats["frames"] == before:
                    table = self.process_clip(clip)  # the shared pass stopped before this clip
                parts.append(table)
        finally:
            pre.close()
        return pa.concat_tables(parts)

    # -- stage contract -------------------------------------------------------------------
    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        from flameqa.io.schema import conform

        cfg = self.config
        rows = [p for r in batch.to_pylist() for p in split_pieces(r, cfg.piece_s)]
        procs = self.inner.processes
        # a few pieces per process: the pool hands them out as processes come free
        runs = clip_runs(rows, 1 if procs == 1 else 2 * procs) if cfg.decode_runs else [[r] for r in rows]
        # longest first (every process takes the next from the front), rows back in clip order
        order = sorted(range(len(runs)), key=lambda i: -sum(_duration(c) for c in runs[i]))
        done = self.inner.map("process_run", [runs[i] for i in order])
        parts = [t for _, t in sorted(zip(order, done), key=lambda x: x[0])]
        table = pa.concat_tables(parts) if parts else conform("faces", [])
        split = {r["clip_id"]: r["_piece_frames"] for r in rows if "_piece_frames" in r}
        return {"faces": join_table(table, split, cfg.max_gap_frames, cfg.min_iou) if split else table}

    def on_error(self, batch: pa.Table, error: str) -> dict[str, pa.Table]:
        from flameqa.io.schema import conform

        return {"faces": conform("faces", [self._empty_row(r, "failed", error, []) for r in batch.to_pylist()])}

    def marker_extra(self) -> dict[str, Any]:
        """Counts since the previous call: the runner asks once per shard, right after it."""
        s = dict(self._stats)
        self._stats = dict.fromkeys(s, 0)
        self._stats["seconds"] = 0.0
        s["fps"] = round(s["frames"] / s["seconds"], 2) if s["seconds"] else None
        s["seconds"] = round(s["seconds"], 3)
        return s

    def close(self) -> None:
        self.inner.close()
        self.landmarker.close()


class SpeakersStage(Stage):
    """Active speaker: each diarized speaker of a clip → the face track that speaks (or -1).

    Reads ``mouth_open`` from the ``faces`` rows (computed from the landmarks when null). Works from
    the ``speech`` table when present; without it there is nothing to associate and no rows come out.
    """

    name = "speakers"
    input_table = "faces"
    side_tables = ()
    optional_side_tables = ("speech",)
    output_tables = ("speakers_faces",)

    def __init__(self, config: SpeakersConfig, ctx: StageContext) -> None:
        super().__init__(config, ctx)
        self.config: SpeakersConfig = config

    def associate(self, faces: pa.Table, speech: pa.Table) -> list[dict[str, Any]]:
        """``speakers_faces`` rows of one clip from its ``faces`` rows and ``speech`` turns."""
        from flameqa.io.schema import column_to_numpy
        from flameqa.vision.active_speaker import TrackSignal, assign, score_matrix
        from flameqa.vision.mouth import mouth_open

        if faces.num_rows == 0:
            return []
        clip_id = faces.column("clip_id")[0].as_py()
        turns: dict[str, list[tuple[float, float]]] = {}
        for r in speech.select(["speaker", "start_s", "end_s", "status"]).to_pylist():
            if r["status"] != "ok" or r["speaker"] is None or r["start_s"] is None or r["end_s"] is None:
                continue
            turns.setdefault(r["speaker"], []).append((float(r["start_s"]), float(r["end_s"])))
        if not turns:
            return []
        per_track: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        fps = 25.0
        mouth_col = faces.column("mouth_open").combine_chunks()
        landmarks_col = None  # combined once, only if some row lacks mouth_open
        for i, r in enumerate(faces.select(["track_id", "fps", "clip_start_s", "frame_idx", "status"]).to_pylist()):
            if r["status"] != "ok" or r["track_id"] < 0 or not r["frame_idx"]:
                continue
            fps = float(r["fps"])
            start = r["clip_start_s"]
            if start is None:
                log.warning("%s: faces rows have no clip_start_s; assuming the clip starts at 0 s", clip_id)
                start = 0.0
            t = start + np.asarray(r["frame_idx"], np.float64) / fps
            mo = mouth_col[i]
            if mo.is_valid:
                m = mo.values.to_numpy(zero_copy_only=False).astype(np.float32)
            else:  # rows written by other tools: recompute from the landmarks
                if landmarks_col is None:
                    landmarks_col = faces.column("landmarks").combine_chunks()
                m = mouth_open(column_to_numpy(landmarks_col, i).reshape(-1, 478, 3))
            per_track.setdefault(int(r["track_id"]), []).append((t, m))
        track_ids = sorted(per_track)
        signals = []
        for tid in track_ids:
            parts = sorted(per_track[tid], key=lambda p: p[0][0])
            signals.append(TrackSignal(tid, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
        names = sorted(turns)
        cfg = self.config
        scores = score_matrix(signals, {s: turns[s] for s in names}, fps, cfg.window_s, cfg.min_overlap_s, cfg.talk_activity)
        choice = assign(scores, cfg.min_score)
        rows = []
        for s, name in enumerate(names):
            k = int(choice[s])
            row_scores = scores[s] if len(track_ids) else np.zeros(0)
            if k >= 0:
                score = float(scores[s, k])
            else:
                finite = row_scores[np.isfinite(row_scores)]
                score = float(finite.max()) if finite.size else float("nan")
            rows.append(
                dict(
                    clip_id=clip_id, speaker=name, track_id=track_ids[k] if k >= 0 else -1, score=score,
                    scores=[float(x) for x in row_scores], track_ids=track_ids,
                )
            )
        return rows

    def __call__(self, batch: pa.Table, side: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
        import pyarrow.compute as pc

        from flameqa.io.schema import conform

        speech = side.get("speech")
        if speech is None:
            speech = conform("speech", [])
        rows: list[dict[str, Any]] = []
        for clip_id in dict.fromkeys(batch.column("clip_id").to_pylist()):
            f = batch.filter(pc.equal(batch.column("clip_id"), clip_id))
            s = speech.filter(pc.equal(speech.column("clip_id"), clip_id)) if speech.num_rows else speech
            rows += self.associate(f, s)
        return {"speakers_faces": conform("speakers_faces", rows)}
