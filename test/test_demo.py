"""`visloc demo` end to end on a small generated tunnel: generate, record, build, localize from the bag, live over
DDS through localizer_node, report and plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_visloc
from visloc_ros.sim.demo import DemoSpec, run_demo

# a 40 m tunnel: 78 map places, ~70 localization frames; lit, so that the figures can be asserted tightly
SMALL = DemoSpec(world="tunnel", seed=1, condition="lit", tunnel_length=40.0, metric_learning=1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, SMALL, log=lambda *_: None)


def test_demo_report_plots_and_recordings(demo):
    out, r = demo
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["median_error_m"] == pytest.approx(r["median_error_m"])
    for key in ("median_error_m", "within_2m", "coverage_95", "p50_latency_ms"):
        assert np.isfinite(r[key]), key
    assert r["localization_frames"] > 50 and r["map_places"] > 60
    assert r["median_error_m"] < 1.0 and r["within_2m"] >= 0.9       # lit to lit: the easy case must be right
    assert 0.0 < r["coverage_95"] <= 1.0
    assert sorted(Path(p).name for p in r["plots"]) == ["error_over_time.png", "trajectory.png"]
    assert all(Path(p).parent == out and Path(p).stat().st_size > 10_000 for p in r["plots"])
    from visloc_ros.core.dataset import read_csv
    from visloc_ros.tools.bag import topics

    for run in ("mapping_run", "localization_run"):
        assert len(read_csv(out / run / "frames.csv")) > 50
        info = topics(out / run / "bag")
        assert {"/camera/image_raw", "/camera/camera_info", "/imu/data", "/odom", "/ground_truth/pose"} <= set(info)


def test_demo_is_deterministic_in_its_recordings(demo, tmp_path):
    """Same seed -> the same localization-run messages (the mapping run is generated the same way)."""
    from visloc_ros.sim.demo import _drives
    from visloc_ros.sim.record import record
    from visloc_ros.sim.worlds import make_world
    from visloc_ros.tools.bag import iter_messages

    out, _ = demo
    world = make_world(SMALL.world, SMALL.seed, length=SMALL.tunnel_length)
    _, qp = _drives(SMALL, world)
    again = record(world, qp, SMALL.condition, tmp_path / "again", camera_hz=SMALL.query_hz, seed=SMALL.seed * 100 + 4)
    first = [(m.topic, m.t_ns, m.raw) for m in iter_messages(out / "localization_run" / "bag")]
    second = [(m.topic, m.t_ns, m.raw) for m in iter_messages(again.bag)]
    assert len(first) == len(second) and first == second


def test_demo_live_through_localizer_node_over_dds(demo, tmp_path):
    import shutil

    from visloc_ros.core.build import add_keypoints
    from visloc_ros.tools.live import run_live

    out, r = demo
    # the live demo's map has learned keypoints (the offline one does not need them): the node then also publishes
    # verified single-image fixes, from a second worker, beside the filter's poses
    shutil.copytree(out / "map", tmp_path / "map")
    add_keypoints(tmp_path / "map")
    # real time (camera 5 Hz, odometry 50 Hz): what a robot sends; faster playback can drop frames on 2 cores
    live = run_live(out / "localization_run" / "bag", tmp_path / "map", rate=1.0, log=lambda *_: None)
    assert live["poses_received"] >= 0.9 * live["images_played"]
    assert live["median_error_m"] < 1.5 and live["within_2m"] >= 0.85
    assert live["verified_received"] >= 1 and live["verified_median_error_m"] is not None


def test_demo_cli_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    res = run_visloc("demo", "--out", str(tmp_path))
    assert res.returncode == 1 and "is not empty" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (tmp_path / "x").read_text() == "keep me"


def test_localize_sequence_with_odometry_csv(demo, tmp_path):
    """The recorded run as CSV + odometry.csv through `visloc localize --sequence --odometry-csv` and `visloc eval`."""
    out, _ = demo
    run = out / "localization_run"
    pred = tmp_path / "pred.csv"
    res = run_visloc("localize", "--sequence", "--map", str(out / "map"), "--images-csv", str(run / "frames.csv"),
                     "--odometry-csv", str(run / "odometry.csv"), "--out", str(pred))
    assert res.returncode == 0, res.stderr
    res = run_visloc("eval", "--pred", str(pred), "--truth", str(run / "frames.csv"), "--radius", "2", "5",
                     "--out", str(tmp_path / "eval"))
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["overall"]["within_2"] >= 0.9
    bad = tmp_path / "bad.csv"
    bad.write_text("image,x,y\nimages/000000.png,0,0\n")
    res = run_visloc("localize", "--sequence", "--map", str(out / "map"), "--images-csv", str(run / "frames.csv"),
                     "--odometry-csv", str(bad), "--out", str(tmp_path / "p2.csv"))
    assert res.returncode == 1 and "lacks column(s) yaw" in res.stderr
