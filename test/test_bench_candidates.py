"""benchmarks/bench_candidates.py: where the single-image fix stands against what its candidates allow, per
condition."""
from __future__ import annotations

import importlib.util
import json

from conftest import REPO


def test_bench_candidates_scores_each_answer_per_condition(xy_map, synth_xy, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_candidates", REPO / "benchmarks" / "bench_candidates.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rep = mod.main(["--map", str(xy_map), "--images-csv", str(synth_xy[1]), "--radius", "3",
                    "--json", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text()) == rep
    groups = rep["by_condition"]
    assert set(groups) == {"all", "day", "night"}  # the synthetic queries are labelled day and night
    assert groups["all"]["queries"] == 15 == groups["day"]["queries"] + groups["night"]["queries"]
    k = rep["candidates"]
    for g in groups.values():
        # a place among the N best exists whenever one among fewer does; the first and the verified best place
        # are among the k
        assert g["first"] <= g["among_5"] <= g["among_10"] <= g[f"among_{k}"] <= 1
        assert 0 <= g["verified"] <= g[f"among_{k}"]
    assert groups["all"]["among_5"] > 0 and groups["all"]["fix"] > 0
    # the test map has learned keypoints: the keypoint-checked ranking and fix, and what the check costs
    assert rep["keypoint_candidates"] == 20 == k
    for g in groups.values():
        assert 0 <= g["kp_first"] <= g[f"among_{k}"] and 0 <= g["kp_fix"] <= 1
    cost = rep["keypoint_cost_ms"]
    assert set(cost) == {"extract", "match", "geometry", "pose", "total"}
    assert 0 < cost["extract"]["p50"] <= cost["total"]["p50"] and cost["total"]["p50"] <= cost["total"]["p99"]
