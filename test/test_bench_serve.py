"""benchmarks/bench_serve.py: uploads to a real `visloc serve` process, the time beyond the localizer's own."""
from __future__ import annotations

import importlib.util
import json

from conftest import REPO
from test_web import chromium


def test_bench_serve_times_uploads_and_scores_them(geo_map, synth_geo, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_serve", REPO / "benchmarks" / "bench_serve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shot = tmp_path / "page.png"
    rep = mod.main(["--map", str(geo_map), "--images-csv", str(synth_geo[1]), "--radius", "3", "--limit", "4",
                    "--json", str(tmp_path / "s.json"), *(["--screenshot", str(shot)] if chromium() else [])])
    assert json.loads((tmp_path / "s.json").read_text()) == rep
    assert rep["uploads"] == 4
    rt, loc, over = rep["round_trip_ms"], rep["localizer_ms"], rep["overhead_ms"]
    assert 0 < loc["p50"] < rt["p50"] and over["p50"] > 0 and rt["p50"] <= rt["p99"]
    assert 0 <= rep["within_radius"] <= 1 and rep["median_error_m"] >= 0
    if chromium():
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
