import numpy as np

from visloc_ros.core.som_index import SomIndex, exhaustive_query, grid_shape, train_som


def clustered_latents(n, d, k, rng, noise=0.3):
    c = rng.normal(size=(k, d))
    x = c[rng.integers(0, k, n)] + noise * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_grid_grows_with_the_map():
    assert grid_shape(1) == (2, 2)
    assert grid_shape(500)[0] < grid_shape(100_000)[0] <= 128
    r, c = grid_shape(100_000)
    assert 1000 < r * c < 2500


def test_every_place_filed_and_lookup_agrees_with_exhaustive():
    rng = np.random.default_rng(0)
    lat = clustered_latents(3000, 32, 60, rng)
    cb = train_som(lat, seed=0)
    idx = SomIndex(cb, lat)
    assert idx.cells.shape == (3000,) and idx.cells.max() < idx.n_cells
    assert idx._counts.sum() == 3000
    q = clustered_latents(200, 32, 60, np.random.default_rng(0))  # same centres, new samples
    agree, scored = 0, []
    for z in q:
        h = idx.query(z, k=5, n_probe=8, min_candidates=64)
        ex_ids, ex_s = exhaustive_query(lat, z, 5)
        agree += int(h.ids[0] == ex_ids[0])
        scored.append(h.n_scored)
        assert np.all(np.diff(h.scores) <= 1e-6)  # best first
        assert np.allclose(h.scores, lat[h.ids] @ z, atol=1e-5)  # exact re-score
    assert agree / len(q) >= 0.95
    assert np.median(scored) < 3000 / 2  # it did not scan the whole map


def test_min_candidates_probes_more_cells_and_add_files_new_places():
    rng = np.random.default_rng(2)
    lat = clustered_latents(400, 16, 10, rng)
    idx = SomIndex(train_som(lat, (6, 6), seed=0), lat)
    h = idx.query(lat[0], k=3, n_probe=1, min_candidates=200)
    assert h.n_scored >= 200 and len(h.cells) > 1
    more = np.concatenate([lat, lat[:5] * 0.999])
    new = idx.add(more)
    assert len(new) == 5 and np.array_equal(new, idx.cells[:5])
    assert idx.query(more[402], k=2).ids[0] in (2, 402)


def test_exclude_leaves_one_place_out():
    rng = np.random.default_rng(3)
    lat = clustered_latents(500, 16, 10, rng)
    idx = SomIndex(train_som(lat, (5, 5), seed=0), lat)
    assert idx.query(lat[7], k=3).ids[0] == 7
    h = idx.query(lat[7], k=3, exclude=7)
    assert 7 not in h.ids and len(h.ids) == 3
    ex_ids, _ = exhaustive_query(np.delete(lat, 7, axis=0), lat[7], 1)
    assert h.ids[0] == (ex_ids[0] if ex_ids[0] < 7 else ex_ids[0] + 1)
