"""Live run over DDS, in separate processes: ``localizer_node`` (sequence mode, wheel odometry) fed by
``visloc bag play``; the poses it publishes on ``/visloc/pose`` are collected here and scored against the
bag's ground truth by image stamp. What ``visloc demo --live`` and the live tests run.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..core.errors import VislocError
from .bag import GT_TOPIC, IMAGE_TOPIC, INFO_TOPIC, ODOM_TOPIC, nearest, pose_track, topics
from .replay import score


def run_live(bag: str | Path, map_dir: str | Path, rate: float = 1.0, sequence: bool = True,
             timeout_s: float = 60.0, log=print) -> dict:
    """Play ``bag`` (image, camera_info, odometry) at ``rate`` x into a fresh ``localizer_node`` and score what
    comes back. Returns the metrics (as :func:`score`) plus received/played counts."""
    try:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
    except ImportError as e:
        raise VislocError(f"--live needs rclpy and the ROS 2 message packages (the README set-up): {e}") from None
    info = topics(bag)
    n_images = info.get(IMAGE_TOPIC, (None, 0))[1]
    bindir = Path(sys.executable).parent
    node_exe = bindir / "localizer_node"
    if not node_exe.exists():
        raise VislocError(f"{node_exe} not found: install the package (scripts/setup.sh)")
    node = subprocess.Popen([str(node_exe), "--ros-args", "-p", f"map_path:={map_dir}", "-p",
                             f"sequence:={'true' if sequence else 'false'}", "-r", f"image:={IMAGE_TOPIC}",
                             "-r", f"odom:={ODOM_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    got: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    verified: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # maps with learned keypoints: the verified fixes
    rclpy.init()
    client = rclpy.create_node("visloc_demo_live")

    def keep_in(store):
        def on_pose(m):
            p = m.pose.pose.position
            store[m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec] = (
                np.array([p.x, p.y, p.z]), np.array(m.pose.covariance).reshape(6, 6)[:2, :2])
        return on_pose

    client.create_subscription(PoseWithCovarianceStamped, "/visloc/pose", keep_in(got), 100)
    client.create_subscription(PoseWithCovarianceStamped, "/visloc/pose_verified", keep_in(verified), 100)
    diag = []
    client.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.append(time.time()), 10)
    player_out = ""
    try:
        end = time.time() + timeout_s
        while time.time() < end and not client.get_publishers_info_by_topic("/visloc/pose"):
            if node.poll() is not None:
                raise VislocError(f"localizer_node exited: {node.communicate()[0].strip().splitlines()[-1:]}")
            rclpy.spin_once(client, timeout_sec=0.1)
        if not client.get_publishers_info_by_topic("/visloc/pose"):
            raise VislocError(f"localizer_node did not come up within {timeout_s:.0f} s")
        # active means its image subscription exists; then let it settle until two diagnostics ticks have passed
        while time.time() < end and not client.get_subscriptions_info_by_topic(IMAGE_TOPIC):
            rclpy.spin_once(client, timeout_sec=0.1)
        diag.clear()
        while time.time() < end and len(diag) < 2:
            rclpy.spin_once(client, timeout_sec=0.1)
        log(f"live: playing {bag} at {rate:g}x into localizer_node (sequence {'on' if sequence else 'off'})")
        t_play = time.time()
        player = subprocess.Popen([str(bindir / "visloc"), "-q", "bag", "play", str(bag), "--topics", IMAGE_TOPIC,
                                   INFO_TOPIC, ODOM_TOPIC, "--rate", str(rate), "--reliable", "--wait-for-subscribers", "15"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while player.poll() is None:
            rclpy.spin_once(client, timeout_sec=0.05)
        end = time.time() + 2.0
        while time.time() < end:
            rclpy.spin_once(client, timeout_sec=0.05)
        player_out = player.communicate()[0].strip()
        wall = time.time() - t_play
    finally:
        client.destroy_node()
        rclpy.shutdown()
        node.terminate()
        try:
            node.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
    if not got:
        raise VislocError(f"no pose came back from localizer_node ({player_out[-300:]})")
    gt_t, gt_p, _ = pose_track(bag, GT_TOPIC)

    def scored(store) -> tuple[dict | None, int]:
        """The poses of ``store`` with a ground-truth pose at their stamp (the image's, as `visloc bag eval` pairs
        them) scored, and how many there were."""
        pairs = [(t, nearest(gt_t, t, 50_000_000)) for t in sorted(store)]
        ts = [t for t, j in pairs if j is not None]
        if not ts:
            return None, 0
        j = np.array([j for _, j in pairs if j is not None])
        est, cov = (np.array([store[t][k] for t in ts]) for k in (0, 1))
        return score(est, cov, np.ones(len(ts), bool), gt_p[j]), len(ts)

    m, n = scored(got)
    if m is None:
        raise VislocError("no pose from localizer_node has a ground-truth pose within 50 ms of its stamp")
    # the poses carry the recording's stamps, so no latency is measured here (benchmarks/bench_live.py does)
    m.update(images_played=int(n_images), poses_received=n, rate=rate, wall_s=round(wall, 1))
    # the verified fixes: single-image answers checked by keypoints, published by the node's second worker for the
    # frames it had time for
    v, m["verified_received"] = scored(verified)
    if v is not None:
        m.update(verified_median_error_m=v["median_error_m"], verified_within_2m=v["within_2m"],
                 verified_coverage_95=v["coverage_95"])
    return m
