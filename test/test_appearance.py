import numpy as np
import pytest

from visloc_ros.core.appearance import DIM, PATCH, THUMB_LONG, THUMB_SHORT, fuse, thumbnail, zscore
from visloc_ros.core.errors import ImageError
from visloc_ros.core.synthetic import draw_scene


def test_thumbnail_is_unit_length_and_ignores_exposure():
    rgb = draw_scene(7)
    t = thumbnail(rgb)
    assert t.shape == (DIM,) and t.dtype == np.float32
    assert abs(float(np.linalg.norm(t)) - 1.0) < 1e-5
    # a darker, lower-contrast exposure of the same scene (night, dusk) keeps the thumbnail
    dark = np.clip(rgb.astype(np.float32) * 0.35 + 10, 0, 255).astype(np.uint8)
    assert float(thumbnail(dark) @ t) > 0.95
    # another place does not
    assert float(thumbnail(draw_scene(8)) @ t) < 0.6


def test_thumbnail_patches_are_normalised_and_portrait_keeps_its_orientation():
    rgb = draw_scene(3)
    t = thumbnail(rgb).reshape(THUMB_SHORT // PATCH, PATCH, THUMB_LONG // PATCH, PATCH)
    np.testing.assert_allclose(t.mean((1, 3)), 0.0, atol=1e-5)  # every patch has zero mean
    portrait = np.ascontiguousarray(np.rot90(rgb))
    tp = thumbnail(portrait).reshape(THUMB_LONG, THUMB_SHORT)
    tl = thumbnail(rgb).reshape(THUMB_SHORT, THUMB_LONG)
    assert float(np.corrcoef(np.rot90(tl).ravel(), tp.ravel())[0, 1]) > 0.9  # the same layout, turned


def test_thumbnail_of_a_flat_frame_is_zero_and_bad_shapes_are_refused():
    assert not np.isnan(thumbnail(np.full((48, 64, 3), 90, np.uint8))).any()
    assert np.all(thumbnail(np.full((48, 64, 3), 90, np.uint8)) == 0)
    with pytest.raises(ImageError):
        thumbnail(np.zeros((48, 64), np.uint8))


def test_fuse_ranks_by_weighted_z_scores_in_the_cnn_units():
    rng = np.random.default_rng(0)
    lat = rng.uniform(0.2, 0.6, 50).astype(np.float32)
    app = rng.uniform(-0.1, 0.3, 50).astype(np.float32)
    best = int(np.argmax(lat))
    app[best] = app.min()                            # the CNN's choice, the thumbnails' worst
    lat[9], app[9] = lat[best] - 0.01, app.max() + 0.1  # a little lower for the CNN, best for the thumbnails
    assert int(np.argmax(fuse(lat, [(app, 0.01)]))) == best  # a small weight keeps the CNN's choice
    np.testing.assert_array_equal(fuse(lat, [(app, 0.0)]), lat)
    np.testing.assert_array_equal(fuse(lat, [(None, 2.0)]), lat)
    f = fuse(lat, [(app, 2.0)])
    np.testing.assert_array_equal(np.argsort(-f), np.argsort(-(zscore(lat) + 2.0 * zscore(app))))
    assert int(np.argmax(f)) == 9
    assert f.mean() == pytest.approx(lat.mean(), abs=1e-5) and f.std() == pytest.approx(lat.std(), rel=1e-4)
    # batched: one row per frame, each fused on its own
    np.testing.assert_allclose(fuse(np.stack([lat, lat]), [(np.stack([app, app]), 2.0)])[1], f, rtol=1e-6)
    # two other signals: each at its own weight (a zero weight or a missing signal drops out)
    reg = rng.uniform(0, 1, 50).astype(np.float32)
    both = fuse(lat, [(app, 2.0), (reg, 0.5)])
    np.testing.assert_array_equal(np.argsort(-both), np.argsort(-(zscore(lat) + 2.0 * zscore(app) + 0.5 * zscore(reg))))
    np.testing.assert_array_equal(fuse(lat, [(app, 2.0), (reg, 0.0)]), f)
    np.testing.assert_array_equal(fuse(lat, [(app, 2.0), (None, 1.0)]), f)
