"""benchmarks/bench_truth_alignment.py: the best monotone alignment of two traversals, and how far a route's
stated truth strays from it."""
from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_truth_alignment",
                                                  REPO / "benchmarks" / "bench_truth_alignment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference_path(sim):
    """Textbook DTW on the cost max(sim) - sim: a cell-by-cell table, then the back-pointers."""
    cost = sim.max() - sim
    n, m = cost.shape
    acc = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            prev = 0.0 if i == j == 0 else min(acc[i - 1, j - 1] if i and j else np.inf,
                                               acc[i - 1, j] if i else np.inf, acc[i, j - 1] if j else np.inf)
            acc[i, j] = cost[i, j] + prev
    return acc[-1, -1]


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (7, 7), (9, 13), (15, 8)])
def test_monotone_alignment_is_the_cheapest_monotone_path(bench, shape):
    rng = np.random.default_rng(sum(shape))
    sim = rng.normal(size=shape)
    path = bench.monotone_alignment(sim)
    assert path[0] == (0, 0) and path[-1] == (shape[0] - 1, shape[1] - 1)
    steps = {(b[0] - a[0], b[1] - a[1]) for a, b in zip(path, path[1:])}
    assert steps <= {(1, 1), (1, 0), (0, 1)}
    cost = sum(sim.max() - sim[i, j] for i, j in path)
    assert cost == pytest.approx(reference_path(sim))


def test_monotone_alignment_follows_a_warped_route(bench):
    # the queries pass the map frames at half speed for a while, then at the same speed: a band around that warp
    warp = np.concatenate([np.arange(10) // 2, np.arange(5, 25)])
    sim = -np.abs(warp[:, None] - np.arange(25)[None, :]).astype(float)
    pairs = dict(bench.monotone_alignment(sim))
    assert [pairs[q] for q in range(len(warp))] == list(warp)


def test_audit_finds_a_mislabelled_stretch(bench, synth_xy, tmp_path):
    map_csv = synth_xy[0]
    with open(map_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the map's own images as the queries, but frames 10-14 labelled with the positions of frames 13-17
    labelled = [dict(r) for r in rows]
    for i in range(10, 15):
        labelled[i]["x"], labelled[i]["y"] = rows[i + 3]["x"], rows[i + 3]["y"]
    queries = tmp_path / "queries.csv"
    with open(queries, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(labelled)
    (tmp_path / "ref").symlink_to(map_csv.parent / "ref")
    pred = tmp_path / "pred.csv"  # a localizer that finds every frame's own place
    with open(pred, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "x", "y"])
        w.writeheader()
        w.writerows({"image": r["image"], "x": r["x"], "y": r["y"]} for r in rows)
    rep = bench.main(["--map-csv", str(map_csv), "--queries-csv", str(queries), "--radius", "1",
                      "--pred", str(pred), "--json", str(tmp_path / "a.json")])
    assert rep["queries"] == rep["map_frames"] == len(rows)
    assert rep["aligned_within"] == pytest.approx((len(rows) - 5) / len(rows))
    assert rep["pred_within_aligned"] == 1.0
    assert rep["pred_within_stated"] == pytest.approx((len(rows) - 5) / len(rows))
    spacing = np.hypot(float(rows[1]["x"]) - float(rows[0]["x"]), float(rows[1]["y"]) - float(rows[0]["y"]))
    assert 2.5 * spacing < rep["offset_max"] < 3.01 * spacing
    assert (tmp_path / "a.json").exists()


def test_audit_refuses_georeferenced_routes(bench, synth_geo):
    with pytest.raises(SystemExit, match="local x/y frame"):
        bench.main(["--map-csv", str(synth_geo[0]), "--queries-csv", str(synth_geo[1]), "--radius", "1"])
