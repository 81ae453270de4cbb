"""rosbag2 round trip: write from a CSV, read back, build a map from the bag, evaluate, play into the node."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_visloc
from visloc_ros.core.preprocess import load_image
from visloc_ros.tools.bag import (GT_TOPIC, IMAGE_TOPIC, IMU_TOPIC, ODOM_TOPIC, BagError, bag_to_dataset, csv_to_bag,
                                  image_stream, pose_track, topics)


@pytest.fixture(scope="module")
def seq_csv(synth_xy):
    """The synthetic queries as a timed sequence (20 Hz) with yaw, plus a small IMU CSV and calibration."""
    folder = synth_xy[1].parent
    rows = list(csv.DictReader(open(synth_xy[1])))
    out = folder / "seq.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["image", "stamp_ns", "x", "y", "yaw"])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"image": r["image"], "stamp_ns": 10**18 + i * 50_000_000, "x": r["x"], "y": r["y"], "yaw": r["yaw"]})
    imu = folder / "imu.csv"
    with open(imu, "w") as fh:
        fh.write("#timestamp [ns],wx,wy,wz,ax,ay,az\n")
        for k in range(200):
            fh.write(f"{10**18 + k * 5_000_000},0.0,0.0,0.1,0.0,0.0,9.81\n")
    calib = folder / "sensor.yaml"
    calib.write_text("%YAML:1.0\nresolution: [320, 240]\nintrinsics: [300.0, 300.0, 160.0, 120.0]\n"
                     "distortion_model: radial-tangential\ndistortion_coefficients: [0.0, 0.0, 0.0, 0.0]\n")
    return out, imu, calib


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_and_read_back(tmp_path, seq_csv, storage):
    csv_path, imu, calib = seq_csv
    bag = tmp_path / f"b_{storage}"
    counts = csv_to_bag(csv_path, bag, imu, calib, storage=storage)
    assert counts[IMAGE_TOPIC] == 15 and counts[IMU_TOPIC] == 200
    info = topics(bag)
    assert info["/camera/camera_info"] == ("sensor_msgs/msg/CameraInfo", 15)
    assert info[ODOM_TOPIC][0] == "nav_msgs/msg/Odometry" and info[GT_TOPIC][0] == "geometry_msgs/msg/PoseStamped"
    t, p, q = pose_track(bag, GT_TOPIC)
    assert len(t) == 15 and t[1] - t[0] == 50_000_000
    first = load_image(csv_path.parent / "query" / "00000.jpg")
    stamp, rgb = next(iter(image_stream(bag, IMAGE_TOPIC)))
    assert stamp == 10**18 and np.array_equal(rgb, first)
    with pytest.raises(BagError, match="already exists"):
        csv_to_bag(csv_path, bag)
    with pytest.raises(BagError, match="has no topic"):
        list(image_stream(bag, "/nope"))


def test_map_from_bag_and_bag_eval(tmp_path, seq_csv, synth_xy):
    bag = tmp_path / "b.mcap"
    csv_to_bag(synth_xy[0], bag)  # the map images as a bag (no stamps: 20 Hz)
    m = tmp_path / "fromba"
    r = run_visloc("build-map", "--bag", str(bag), "--out", str(m), "--encoder-steps", "60", "--latent-dim", "32")
    assert r.returncode == 0, r.stderr
    assert "30 places" in r.stdout and (tmp_path / "fromba.images" / "map.csv").is_file()
    qbag = tmp_path / "q.mcap"
    csv_to_bag(seq_csv[0], qbag)
    r = run_visloc("bag", "eval", str(qbag), "--map", str(m), "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert rep["frames"] == 15 and rep["published"] == 1.0 and rep["ate_rmse_m"] is not None and rep["within_2m"] >= 0
    tum = (tmp_path / "ev" / "estimate_tum.txt").read_text().splitlines()
    assert len(tum) == 15 and len(tum[0].split()) == 8
    r = run_visloc("bag", "eval", str(tmp_path / "none.mcap"), "--map", str(m), "--out", str(tmp_path / "ev2"))
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_keyframes_drop_a_stop_and_keep_a_turn(tmp_path, synth_xy):
    """A mapping run that drives 1 m per frame, stands still for frames 5-9, then turns on the spot (frames
    15-17, 30 degrees each): keyframes by travel drop the stop's copies, by turn they keep the turn."""
    rows = list(csv.DictReader(open(synth_xy[0])))[:20]
    x, yaw, out = 0.0, 0.0, tmp_path / "run.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["image", "x", "y", "yaw"])
        w.writeheader()
        for i, r in enumerate(rows):
            if 15 <= i <= 17:
                yaw += 30.0
            elif not 5 <= i <= 9:
                x += 1.0
            w.writerow({"image": str(synth_xy[0].parent / r["image"]), "x": x, "y": 0.0, "yaw": yaw})
    bag = tmp_path / "run.mcap"
    csv_to_bag(out, bag)

    def kept(**kw):
        ds = tmp_path / f"ds{len(kw)}{sorted(kw.items())}"
        got = list(csv.DictReader(open(bag_to_dataset(bag, IMAGE_TOPIC, GT_TOPIC, ds, **kw))))
        return [float(r["x"]) for r in got]

    assert len(kept()) == 20                                   # off by default: every image
    by_travel = kept(min_travel_m=0.5)
    assert len(by_travel) == 20 - 5 - 3 and by_travel == sorted(set(by_travel))  # no stop copies, no turn frames
    assert len(kept(min_travel_m=0.5, min_turn_deg=20.0)) == 20 - 5  # the turn on the spot is kept
    assert kept(min_travel_m=2.5) == [1.0, 4.0, 7.0, 10.0]     # x runs 1..12: the first image at least 2.5 m on


def test_bag_dataset_needs_matching_poses(tmp_path, synth_xy):
    bag = tmp_path / "b.mcap"
    csv_to_bag(synth_xy[1], bag)
    with pytest.raises(BagError, match="has no topic"):
        bag_to_dataset(bag, IMAGE_TOPIC, "/no/pose", tmp_path / "ds")


def test_play_into_the_node_over_dds(tmp_path, seq_csv, xy_map):
    rclpy = pytest.importorskip("rclpy")
    from geometry_msgs.msg import PoseWithCovarianceStamped

    bag = tmp_path / "q.mcap"
    csv_to_bag(seq_csv[0], bag)
    domain = str(int(os.environ.get("ROS_DOMAIN_ID", "0") or 0) + 1)
    env = dict(os.environ, ROS_DOMAIN_ID=domain, PYTHONUNBUFFERED="1")
    bindir = Path(sys.executable).parent
    node = subprocess.Popen([str(bindir / "localizer_node"), "--ros-args", "-p", f"map_path:={xy_map}",
                             "-r", "image:=/replay/image"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    os.environ["ROS_DOMAIN_ID"] = domain
    rclpy.init()
    client = rclpy.create_node("bag_test_client")
    poses = []
    client.create_subscription(PoseWithCovarianceStamped, "/visloc/pose", poses.append, 50)
    try:
        end = time.time() + 30
        while time.time() < end and not client.get_publishers_info_by_topic("/visloc/pose"):
            rclpy.spin_once(client, timeout_sec=0.1)
        # the node subscribes once active (a loaded machine takes seconds): the player waits for it
        player = subprocess.Popen([str(bindir / "visloc"), "bag", "play", str(bag), "--topics", IMAGE_TOPIC,
                                   "--remap", f"{IMAGE_TOPIC}:=/replay/image", "--rate", "0.5",
                                   "--wait-for-subscribers", "30"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        end = time.time() + 60
        while time.time() < end and player.poll() is None:  # playing: 15 frames at half speed, ~1.5 s
            rclpy.spin_once(client, timeout_sec=0.1)
        end = time.time() + 3
        while time.time() < end:  # the last poses in flight
            rclpy.spin_once(client, timeout_sec=0.1)
        out = player.communicate(timeout=10)[0]
        assert player.returncode == 0, out
        assert "published 15 messages" in out
        stamps = {p.header.stamp.sec * 10**9 + p.header.stamp.nanosec for p in poses}
        assert len(poses) >= 10 and stamps <= {10**18 + i * 50_000_000 for i in range(15)}  # recorded stamps kept
    finally:
        client.destroy_node()
        rclpy.shutdown()
        node.terminate()
        node.communicate(timeout=10)
        os.environ["ROS_DOMAIN_ID"] = str(int(domain) - 1)
