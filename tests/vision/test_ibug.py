"""MediaPipe → iBUG-68 correspondence, measured against the 68 manual points of real photos.

Error = mean point distance / outer inter-ocular distance (300-W's NME). Measured with the
bundled float16 FaceLandmarker (see flameqa/vision/ibug.py for the map):

* takeo.ppm: NME 4.3 % over all 68 points (jaw 6.1, brows 6.3, nose 2.3, eyes 3.1, mouth 3.5).
* einstein.jpg: NME 8.0 % (jaw 10.5, brows 8.9, nose 9.8, eyes 3.6, mouth 7.4); before the jaw
  followed the mesh silhouette, 8.4 % (jaw 11.8). The face is ~90 px in an 817×1024 grayscale
  archive photo, turned, rolled 18°, mouth open under a moustache. What is left is the landmark
  model's fit, not the crop and not the map:

  - crop: re-landmarking square crops of 1.5-3× the face at native size, 256 px and 512 px
    (bilinear, bicubic, Lanczos), upright by the eye line or not, gives 7.8-15 %; VIDEO-mode
    tracking of the same crop (second ROI from the first landmarks) settles at 8.0-8.5 %;
    averaging with the mirrored image's landmarks, 8.2-10.8 %.
  - map: after the best similarity transform the points are still 6.8 % off (shape, not
    placement), and even the vertex map fitted to both images at once (per point, the mesh
    vertex with the least mean error over the two) leaves einstein at 5.7 % (brows 8.6, nose
    7.2): no fixed correspondence reaches 5 % on this face.

  So einstein asserts its eyes (< 5 %) and the measured total as a regression bound; the spread
  of the crop sweep is why the bound keeps a margin.
"""

from __future__ import annotations

import numpy as np
import pytest

from flameqa.vision.ibug import GROUPS, IBUG_FROM_MEDIAPIPE, JAW_LEFT, JAW_RIGHT, _on_silhouette, interocular, nme, read_pts, to_ibug68

from .conftest import IMAGES, need


def test_map_is_complete_and_in_range():
    assert sorted(IBUG_FROM_MEDIAPIPE) == list(range(17, 68))
    assert all(0 <= i < 468 for idx in IBUG_FROM_MEDIAPIPE.values() for i in idx)
    assert sorted(i for g in GROUPS.values() for i in g) == list(range(68))


def _face_with_jaw_on_a_circle(rng) -> np.ndarray:
    """``[478, 3]`` points: the jaw chains on a circle of radius 10, every other point inside radius 3."""
    lm = rng.normal(size=(478, 3))
    lm[:, :2] *= 3.0 / np.linalg.norm(lm[:, :2], axis=1, keepdims=True).max()
    chain = list(JAW_LEFT) + list(JAW_RIGHT[:-1])
    ang = np.linspace(0.1, 2 * np.pi - 0.1, len(chain))
    lm[chain, :2] = 10.0 * np.c_[np.cos(ang), np.sin(ang)]
    return lm


def test_to_ibug68_shapes_and_jaw_ends():
    rng = np.random.default_rng(0)
    lm = np.stack([np.stack([_face_with_jaw_on_a_circle(rng) for _ in range(5)]) for _ in range(2)])
    out = to_ibug68(lm)
    assert out.shape == (2, 5, 68, 3)
    # jaw vertices already on the silhouette stay where they are
    assert np.allclose(out[..., 0, :], lm[..., 127, :]) and np.allclose(out[..., 8, :], lm[..., 152, :])
    assert np.allclose(out[..., 16, :], lm[..., 356, :]) and np.allclose(out[..., 36, :], lm[..., 33, :])


def test_jaw_vertex_inside_moves_onto_the_silhouette():
    lm = _face_with_jaw_on_a_circle(np.random.default_rng(1))
    moved = lm.copy()
    c = lm[:468, :2].mean(0)
    moved[234, :2] = c + 0.5 * (lm[234, :2] - c)  # pulled halfway in: no longer on the hull
    p = _on_silhouette(moved, JAW_LEFT)[JAW_LEFT.index(234)]
    d, r = p[:2] - c, lm[234, :2] - c
    assert abs(d[0] * r[1] - d[1] * r[0]) < 1e-9 * np.dot(r, r) and np.dot(d, r) > 0, "not on the ray"
    # on the chord between its hull neighbours (the circle points on either side), so just inside r
    assert 0.9 * np.linalg.norm(r) < np.linalg.norm(d) <= np.linalg.norm(r) + 1e-9


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
    if (bgr == bgr[:, :, :1]).all():  # a grayscale photo: its one-channel array must give the same faces
        gray = landmarker.detect_image(cv2.imread(str(img), cv2.IMREAD_GRAYSCALE))
        assert gray.n == faces.n and np.allclose(gray.landmarks, faces.landmarks, atol=1e-3)
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
    # regression bound over the measured 8.0 % (see the module docstring for why not 5 %)
    assert total < 0.10, f"einstein NME {total:.3f} (groups {groups})"
