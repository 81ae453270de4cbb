"""Learned keypoints: extraction (the exported ONNX graphs), matching, epipolar inliers, their fusion."""
import cv2
import numpy as np
import pytest

from visloc_ros.core.keypoints import (COUNT, KeypointExtractor, epipolar_inliers, fuse_inliers, mutual_matches,
                                       orientation, pack_descriptors, unpack_descriptors)
from visloc_ros.core.synthetic import draw_scene


@pytest.fixture(scope="module")
def extractor():
    ex = KeypointExtractor(threads=2)
    yield ex
    ex.close()


def shifted(img, dx, dy, angle=0.0, scale=1.0):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def test_an_image_gives_its_keypoints_at_the_size_of_its_orientation(extractor):
    for shape, size in (((480, 640), (320, 240)), ((256, 192), (240, 320)), ((32, 64), (320, 240))):
        img = cv2.resize(draw_scene(5), shape[::-1])
        kp = extractor(img)
        assert kp.size == size and orientation(img.shape) == ("portrait" if shape[0] > shape[1] else "landscape")
        assert kp.xy.shape == (COUNT, 2) and kp.desc.shape[0] == COUNT and kp.scores.shape == (COUNT,)
        assert (kp.xy >= 0).all() and (kp.xy[:, 0] < size[0]).all() and (kp.xy[:, 1] < size[1]).all()
        np.testing.assert_allclose(np.linalg.norm(kp.desc, axis=1), 1.0, atol=1e-3)


def test_the_same_place_seen_from_aside_has_far_more_inliers_than_another_place(extractor):
    scene = draw_scene(11)
    a = extractor(scene)
    same = extractor(shifted(scene, 14, -6, angle=4, scale=1.05))
    other = extractor(draw_scene(12))
    counts = []
    for b in (same, other):
        i0, i1 = mutual_matches(a.desc, b.desc)
        counts.append(epipolar_inliers(a.xy[i0], b.xy[i1])[0])
    assert counts[0] >= 60 and counts[0] > 3 * counts[1]


def test_mutual_matches_are_mutual():
    rng = np.random.default_rng(0)
    d0 = rng.normal(size=(50, 16)).astype(np.float32)
    d1 = np.concatenate([d0[:30] + 0.01 * rng.normal(size=(30, 16)), rng.normal(size=(40, 16))]).astype(np.float32)
    d0 /= np.linalg.norm(d0, axis=1, keepdims=True)  # unit descriptors, as the extractor gives
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    i0, i1 = mutual_matches(d0, d1)
    s = d0 @ d1.T
    assert all(s[a].argmax() == b and s[:, b].argmax() == a for a, b in zip(i0, i1))
    assert set(range(30)) <= set(i0.tolist()) and (i1[np.isin(i0, range(30))] == i0[np.isin(i0, range(30))]).all()
    assert mutual_matches(d0[:0], d1)[0].size == 0


def test_too_few_or_degenerate_matches_give_no_inliers():
    assert epipolar_inliers(np.zeros((5, 2)), np.zeros((5, 2))) == (0, None)
    same = np.tile([[10.0, 20.0]], (30, 1))  # every point the same: no geometry (OpenCV 5 raises; we say 0)
    assert epipolar_inliers(same, same)[0] == 0


def test_descriptors_survive_int8_storage():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(100, 128)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    packed = pack_descriptors(d)
    assert packed.dtype == np.int8
    back = unpack_descriptors(packed)
    assert (np.sum(back * d, axis=1) > 0.995).all()


def test_fusion_moves_the_best_checked_candidate_first_and_the_unchecked_down():
    scores = np.array([0.90, 0.89, 0.88, 0.87, 0.50])
    fused = fuse_inliers(scores, np.array([10, 12, 80, 9]), weight=2.0)
    assert int(np.argmax(fused)) == 2
    assert fused[4] < scores[4]
    np.testing.assert_allclose(fuse_inliers(scores, np.array([10, 12, 80, 9]), 0.0), scores)
    np.testing.assert_allclose(fuse_inliers(scores, np.array([7]), 2.0), scores)  # one checked: nothing to compare
