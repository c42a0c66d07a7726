"""MediaPipe → iBUG-68 correspondence, measured against the 68 manual points of real photos.

Error = mean point distance / outer inter-ocular distance (300-W's NME). Measured with the
bundled float16 FaceLandmarker (see flameqa/vision/ibug.py for the map):

* takeo.ppm: NME 4.4 % over all 68 points (jaw 6.3, brows 6.3, nose 2.3, eyes 3.1, mouth 3.5).
* einstein.jpg: NME 8.4 % (jaw 11.8, brows 8.9, nose 9.8, eyes 3.6, mouth 7.4). The face is
  80 px wide in a 817×1024 archive photo: MediaPipe finds it only through the zoom search, and
  its mesh sits off the lower face — a fit error more than a map error: the mouth points as a
  group are displaced 6.8 % of the inter-ocular distance upwards (their shape error once that
  shift is removed is 3.3 %), the nose 7.6 %. Only the eyes meet 5 % on this image; the test
  asserts the measured figures as regressions.
"""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.vision.ibug import GROUPS, IBUG_FROM_MEDIAPIPE, interocular, nme, read_pts, to_ibug68

from .conftest import IMAGES, need


def test_map_is_complete_and_in_range():
    assert sorted(IBUG_FROM_MEDIAPIPE) == list(range(17, 68))
    assert all(0 <= i < 468 for idx in IBUG_FROM_MEDIAPIPE.values() for i in idx)
    assert sorted(i for g in GROUPS.values() for i in g) == list(range(68))


def test_to_ibug68_shapes_and_jaw_ends():
    rng = np.random.default_rng(0)
    lm = rng.normal(size=(2, 5, 478, 3))
    out = to_ibug68(lm)
    assert out.shape == (2, 5, 68, 3)
    assert np.allclose(out[..., 0, :], lm[..., 127, :]) and np.allclose(out[..., 8, :], lm[..., 152, :])
    assert np.allclose(out[..., 16, :], lm[..., 356, :]) and np.allclose(out[..., 36, :], lm[..., 33, :])


def test_nme_and_pts(tmp_path):
    p = tmp_path / "a.pts"
    pts = np.c_[np.arange(68.0), np.zeros(68)]
    p.write_text("version: 1\nn_points:  68\n{\n" + "\n".join(f"{x} {y}" for x, y in pts) + "\n}\n")
    g = read_pts(p)
    assert g.shape == (68, 2) and interocular(g) == pytest.approx(9.0)
    assert nme(g + [0.0, 0.9], g) == pytest.approx(0.1)


def _measure(landmarker, name: str):
    import cv2

    img = need(IMAGES / name)
    truth = read_pts(img.with_suffix(".pts"))
    bgr = cv2.imread(str(img))
    faces = landmarker.detect_image(np.ascontiguousarray(bgr[:, :, ::-1]))
    assert faces.n >= 1, f"no face found in {name}"
    # the annotated face: the one whose landmarks centre is nearest the annotation's
    k = int(np.argmin(np.linalg.norm(faces.landmarks[:, :, :2].mean(1) - truth.mean(0), axis=1)))
    pred = to_ibug68(faces.landmarks[k])
    groups = {g: nme(pred, truth, idx) for g, idx in GROUPS.items()}
    # how far each group is displaced as a whole (fit placement) vs its shape error
    d = (pred[:, :2] - truth) / interocular(truth)
    shift = {g: float(np.linalg.norm(d[list(idx)].mean(0))) for g, idx in GROUPS.items()}
    return nme(pred, truth), groups, shift


def test_takeo_within_5_percent_of_interocular(landmarker, record_property):
    total, groups, shift = _measure(landmarker, "takeo.ppm")
    record_property("nme", {"all": total, **groups})
    record_property("group_shift", shift)
    print(f"takeo NME {total:.4f} {groups} group shift {shift}")
    assert total < 0.05, f"takeo NME {total:.3f} ≥ 5 % (groups {groups})"
    assert groups["eyes"] < 0.05 and groups["nose"] < 0.05 and groups["mouth"] < 0.05


def test_einstein_measured(landmarker, record_property):
    total, groups, shift = _measure(landmarker, "einstein.jpg")
    record_property("nme", {"all": total, **groups})
    record_property("group_shift", shift)
    print(f"einstein NME {total:.4f} {groups} group shift {shift}")
    assert groups["eyes"] < 0.05, f"einstein eyes NME {groups['eyes']:.3f}"
    # regressions against the measured 8.4 % (see the module docstring for why not 5 %)
    assert total < 0.10
