"""Test helper: run MediaPipe's FaceLandmarker (VIDEO mode) on a clip and return faces-table columns.

Stands in for the faces stage so the fitter can be tested on real landmarks. Results are cached per
clip under the pytest cache folder given by the caller (decoding + landmarking a GRID clip takes a
few seconds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GRID_DIR = SHARED_DATA / "face_video" / "grid"


def landmarker_bundle() -> Path | None:
    from flameqa.models import model_dir

    p = model_dir() / "face_landmarker" / "face_landmarker.task"
    return p if p.is_file() else None


def run_face_landmarker(video: Path, max_frames: int | None = None) -> dict[str, np.ndarray | float | int]:
    """Landmark every frame of ``video`` (one face).

    Returns ``landmarks [T,478,3]`` (pixels x, y and MediaPipe relative z scaled like x, NaN when no
    face), ``transform [T,4,4]``, ``blendshapes [T,52]``, ``detected [T]``, ``fps``, ``width``, ``height``.
    """
    import av
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python import vision

    bundle = landmarker_bundle()
    if bundle is None:
        raise FileNotFoundError("face_landmarker.task is not in the model cache (run `make setup`)")
    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(bundle)),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=1,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    lms, tfs, bss, det = [], [], [], []
    with av.open(str(video)) as container, vision.FaceLandmarker.create_from_options(opts) as lm:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        w = h = 0
        for i, frame in enumerate(container.decode(stream)):
            if max_frames is not None and i >= max_frames:
                break
            rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            h, w = rgb.shape[:2]
            res = lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), int(round(i * 1000 / fps)))
            if res.face_landmarks:
                pts = np.array([[p.x * w, p.y * h, p.z * w] for p in res.face_landmarks[0]], np.float32)
                lms.append(pts)
                tfs.append(np.asarray(res.facial_transformation_matrixes[0], np.float32).reshape(4, 4))
                bss.append(np.array([c.score for c in res.face_blendshapes[0]], np.float32))
                det.append(True)
            else:
                lms.append(np.full((478, 3), np.nan, np.float32))
                tfs.append(np.full((4, 4), np.nan, np.float32))
                bss.append(np.full(52, np.nan, np.float32))
                det.append(False)
    return {
        "landmarks": np.stack(lms),
        "transform": np.stack(tfs),
        "blendshapes": np.stack(bss),
        "detected": np.array(det),
        "fps": fps,
        "width": w,
        "height": h,
    }


def cached_face_landmarks(video: Path, cache_dir: Path) -> dict[str, np.ndarray | float | int]:
    """``run_face_landmarker`` with an .npz cache keyed by file name, size and mtime."""
    st = video.stat()
    cache = cache_dir / f"{video.stem}-{st.st_size}-{int(st.st_mtime)}.npz"
    if cache.is_file():
        d = dict(np.load(cache))
        return {k: (v.item() if v.ndim == 0 else v) for k, v in d.items()}
    out = run_face_landmarker(video)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out
