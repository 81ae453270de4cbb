#!/usr/bin/env python3
"""Live, separate processes over DDS: `visloc bag play --restamp` -> localizer_node -> this client.

Reports the share of image frames that produced a pose and the latency from the image's header stamp
(set at publishing by --restamp) to the pose's receipt here, p50/p99.

    python benchmarks/bench_live.py --bag euroc.mcap --map MAPDIR [--rate 1.0] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bag", required=True)
    ap.add_argument("--map", required=True)
    ap.add_argument("--image-topic", default="/camera/image_raw")
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", "77")
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped

    from visloc_ros.tools.bag import topics

    n_images = topics(a.bag)[a.image_topic][1]
    bindir = Path(sys.executable).parent
    node = subprocess.Popen([str(bindir / "localizer_node"), "--ros-args", "-p", f"map_path:={a.map}",
                             "-r", f"image:={a.image_topic}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    client = rclpy.create_node("visloc_live_bench")
    got = []
    client.create_subscription(PoseWithCovarianceStamped, "/visloc/pose",
                               lambda m: got.append((time.time_ns(), m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)), 100)
    try:
        end = time.time() + 60
        while time.time() < end and not client.get_publishers_info_by_topic("/visloc/pose"):
            rclpy.spin_once(client, timeout_sec=0.1)
        time.sleep(2.0)
        player = subprocess.Popen([str(bindir / "visloc"), "bag", "play", a.bag, "--topics", a.image_topic,
                                   "--restamp", "--rate", str(a.rate)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        while player.poll() is None:
            rclpy.spin_once(client, timeout_sec=0.05)
        end = time.time() + 2.0
        while time.time() < end:
            rclpy.spin_once(client, timeout_sec=0.05)
        print(player.communicate()[0].strip())
    finally:
        client.destroy_node()
        rclpy.shutdown()
        node.terminate()
        node.communicate(timeout=10)
    lat = np.array([(r - s) / 1e6 for r, s in got])
    rep = {"bag": a.bag, "map": a.map, "images": n_images, "poses": len(got), "pose_fraction": len(got) / n_images,
           "rate_hz": 20.0 * a.rate, "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                                                    "p99": float(np.percentile(lat, 99))} if len(lat) else None}
    print(f"{len(got)} poses for {n_images} images ({100 * rep['pose_fraction']:.1f}%); image stamp -> pose receipt "
          f"p50 {np.percentile(lat, 50):.1f} ms, p90 {np.percentile(lat, 90):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
