"""benchmarks/bench_backends.py: times the CNN and the map's encoder on every backend usable here."""
from __future__ import annotations

import importlib.util

from conftest import REPO


def test_bench_backends_times_cnn_and_encoder(xy_map):
    spec = importlib.util.spec_from_file_location("bench_backends", REPO / "benchmarks" / "bench_backends.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rep = mod.main(["--map", str(xy_map), "--batch", "2", "--n", "3"])
    cpu = rep["results"]["onnxruntime-cpu"]  # always there; GPU backends only where they can run
    assert set(cpu) == {"cnn_b1", "cnn_b2", "encoder_b1", "encoder_b2"}
    assert all(r["p50_ms"] > 0 and r["images_per_s"] > 0 for r in cpu.values())
