import numpy as np
import pytest

from visloc_ros.core.verification import chamfer, local_mean, normalised, rerank, reranked


def _feats(rng, n=30, c=16):
    return rng.normal(size=(n, c)).astype(np.float32)


def test_chamfer_finds_the_place_whose_parts_the_frame_shows_in_another_order():
    """A place seen with its parts elsewhere in the frame (positions shuffled, a little noise) scores higher than
    places made of other parts, and a place scores 1 against itself."""
    rng = np.random.default_rng(0)
    places = np.stack([_feats(rng) for _ in range(5)])
    mean = local_mean(places)
    query = places[2][rng.permutation(30)] + 0.3 * rng.normal(size=(30, 16)).astype(np.float32)
    s = chamfer(normalised(query, mean), normalised(places, mean))
    assert s.shape == (5,) and int(np.argmax(s)) == 2 and s[2] > s[np.arange(5) != 2].max() + 0.2
    assert np.isclose(chamfer(normalised(places[1], mean), normalised(places[1:2], mean))[0], 1.0, atol=1e-5)


def test_normalised_centres_on_the_map_mean():
    """What every place shares (a constant offset) does not make them alike once centred."""
    rng = np.random.default_rng(1)
    shared = 10 * np.ones(16, np.float32)
    places = np.stack([_feats(rng) + shared for _ in range(50)])
    mean = local_mean(places)
    np.testing.assert_allclose(mean, shared, atol=0.2)
    x = normalised(places, mean)
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-5)
    assert abs(float((x[0] @ x[1].T).mean())) < 0.1  # unrelated places: no likeness left


def test_rerank_adds_weighted_z_scores_in_units_of_the_scores_spread():
    scores = np.array([0.80, 0.79, 0.70, 0.60], np.float32)
    ch = np.array([0.1, 0.9, 0.5, 0.5])
    np.testing.assert_allclose(rerank(scores, ch, 0.0), scores)
    out = rerank(scores, ch, 1.0)
    z = (ch - ch.mean()) / ch.std()
    np.testing.assert_allclose(out, scores + scores.std() * z, rtol=1e-5)
    assert int(np.argmax(out)) == 1  # the second place, far better verified, now leads
    order, best_first = reranked(scores, ch, 1.0)
    np.testing.assert_array_equal(order, np.argsort(-out, kind="stable"))
    np.testing.assert_allclose(best_first, out[order])
    assert order[0] == 1
    np.testing.assert_allclose(rerank(scores[:1], ch[:1], 2.0), scores[:1])  # one candidate: nothing to re-rank


@pytest.mark.parametrize("weight", [2.0, 8.0])
def test_rerank_keeps_the_order_when_verification_cannot_tell(weight):
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    np.testing.assert_allclose(rerank(scores, np.full(3, 0.5), weight), scores, atol=1e-6)
    np.testing.assert_array_equal(reranked(scores, np.full(3, 0.5), weight)[0], [0, 1, 2])
