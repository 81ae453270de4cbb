"""benchmarks/bench_training.py: trains a map's encoder on the devices asked for and reports time and quality."""
from __future__ import annotations

import importlib.util
import json

import yaml

from conftest import REPO


def test_bench_training_reports_each_device(xy_map, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_training", REPO / "benchmarks" / "bench_training.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "t.json"
    assert mod.main(["--map", str(xy_map), "--device", "cpu", "--repeat", "2", "--steps", "30", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    cpu = res["devices"]["cpu"]
    assert res["descriptors"][0] == yaml.safe_load((xy_map / "map.yaml").read_text())["n_places"]
    assert cpu["label"] == "cpu" and cpu["first_s"] > 0 and cpu["warm_median_s"] > 0
    assert 0 < cpu["reconstruction_cosine"] <= 1 and "nn_agreement_with_first_device" in cpu
