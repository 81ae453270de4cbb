"""benchmarks/bench_reliability.py, in miniature: a short soak of the real node, a few fuzz inputs of every class
and two kill trials; the summary's figures and the exit code."""
from __future__ import annotations

import importlib.util
import json

from conftest import REPO


def test_bench_reliability_runs_every_part_and_passes(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_reliability", REPO / "benchmarks" / "bench_reliability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    code = mod.main(["--minutes", "0.3", "--fuzz-scale", "0.04", "--trials", "2", "--work", str(tmp_path / "w"),
                     "--json", str(tmp_path / "r.json")])
    rep = json.loads((tmp_path / "r.json").read_text())
    s, f, c = rep["soak"], rep["fuzz"], rep["crash"]
    assert code == 0, {k: v.get("ok") for k, v in rep.items() if isinstance(v, dict)}
    # soak: the node answered at 30 Hz and did not restart; its memory was sampled and plotted
    assert s["frames_in"] > 300 and s["poses_out"] > 0.5 * s["frames_in"] and s["restarts"] == 0
    assert s["rss_mb"]["end"] > 50 and len(s["samples"]) >= 2 and (tmp_path / "w" / "soak.png").is_file()
    assert s["latency_ms"]["p50"] <= s["latency_ms"]["p99"]
    # fuzz: every class was tried; bad images refused with one line, the counted classes as many as were bad
    assert set(f["inputs"]) == {"Image", "CompressedImage", "CameraInfo", "Odometry", "image files", "CSV datasets",
                                "EXIF photos", "map folders"}
    assert all(n > 0 for n in f["inputs"].values())
    assert f["node"]["classes"]["Image"].get("rejected, one line", 0) > 0
    assert f["node"]["odometry"]["rejected"] == f["node"]["odometry"]["expected"]
    assert f["cli"]["crashes"] == 0 and all(v == 5 for v in f["node"]["good_frames_after"].values())
    # crash: two kills, the map intact after each; a full disk refused with one line, the old map untouched
    assert c["trials"] == 2 and c["intact"] == 2 and c["leftovers_swept"]
    assert c["full_disk"]["ok"] and c["full_disk"]["message"].startswith("visloc build-map: error: cannot write map")
