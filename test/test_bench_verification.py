"""benchmarks/bench_verification.py: re-ranks each query's best candidates (local features + USAC, thumbnails)
and scores every re-ranking against the same candidates."""
from __future__ import annotations

import importlib.util

from conftest import REPO


def test_bench_verification_scores_every_reranking(xy_map, synth_xy, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_verification", REPO / "benchmarks" / "bench_verification.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rep = mod.main(["--map", str(xy_map), "--images-csv", str(synth_xy[1]), "--radius", "3", "--k", "5",
                    "--detector", "orb", "--json", str(tmp_path / "v.json")])
    assert rep["queries"] == 15 and rep["k"] == 5 and (tmp_path / "v.json").exists()
    # a perfect verifier among the K can only do as well as the first place or better
    assert rep["oracle_top_k"] >= rep["cnn_top1"] > 0
    for scores in (rep["local_features"], rep["thumbnails"]):
        assert len(scores) == 4 and all(0 <= v <= rep["oracle_top_k"] for v in scores.values())
