"""Real MediaPipe landmarks of GRID clips through the fit stage (default config): the fitted
landmarks accelerate at most half as much as the raw ones while staying within 2% of the eye distance."""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.io.schema import conform
from tests.fit.mediapipe_util import GRID_DIR, cached_face_landmarks, landmarker_bundle

pytestmark = pytest.mark.real_data


def _clips():
    if not GRID_DIR.is_dir():
        return []
    return sorted(GRID_DIR.glob("*.mpg"))


@pytest.fixture(scope="module")
def grid_faces(request):
    if not GRID_DIR.is_dir():
        pytest.skip(f"real test media {GRID_DIR} is absent (../shared/data beside the project root)")
    if landmarker_bundle() is None:
        pytest.skip("face_landmarker.task is not in the model cache (run `make setup`)")
    cache = request.config.cache.mkdir("fit_mediapipe")
    rows = []
    for k, video in enumerate(_clips()):
        d = cached_face_landmarks(video, cache)
        t = len(d["detected"])
        rows.append({
            "clip_id": video.stem, "video_id": video.stem, "track_id": 0, "segment": 0, "fps": float(d["fps"]),
            "image_width": int(d["width"]), "image_height": int(d["height"]), "frame_idx": list(range(t)),
            "detected": d["detected"].tolist(), "det_score": np.where(d["detected"], 1.0, np.nan).astype(np.float32).tolist(),
            "landmarks": d["landmarks"].reshape(t, -1), "blendshapes": np.nan_to_num(d["blendshapes"]).reshape(t, -1),
            "transform": d["transform"].reshape(t, -1), "flags": [], "status": "ok", "error": None,
        })
    return conform("faces", rows)


def test_grid_jitter_and_nme(grid_faces):
    from flameqa.fit.config import FitConfig
    from flameqa.fit.stage import FitStage
    from flameqa.stages.base import StageContext

    stage = FitStage(FitConfig(device="cpu"), StageContext(out=None))  # type: ignore[arg-type]
    out = stage(grid_faces, {})["flame"].to_pylist()
    assert len(out) == grid_faces.num_rows >= 1
    report = []
    for row in out:
        nme = float(np.nanmean(np.asarray(row["nme"], float)))
        report.append(f"{row['clip_id']}: jitter_ratio={row['jitter_ratio']:.3f} nme={100 * nme:.2f}%")
        assert row["status"] == "ok" and np.mean(row["valid"]) > 0.95
        assert row["jitter_ratio"] <= 0.5, report[-1]
        assert nme <= 0.02, report[-1]
    print("\n".join(report))
