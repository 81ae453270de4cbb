"""A real ``localizer_node`` in its own process and a client node here, over DDS: publishers of every input the node
takes, subscribers of everything it says, and the node's resident memory read from /proc."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from visloc_ros.cli.main import command

IMAGE, COMPRESSED, INFO, ODOM = "/rig/image", "/rig/image/compressed", "/rig/camera_info", "/rig/odom"


def visloc(*args: str) -> list[str]:
    """The command line of the installed ``visloc`` (quiet), as a user runs it."""
    return command() + ["-q", *args]


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process (MiB), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class NodeRig:
    def __init__(self, map_dir: str | Path, params: dict[str, str] | None = None, log_path: str | Path | None = None):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from nav_msgs.msg import Odometry
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from visloc_ros.msg import LocalizationStatus

        exe = Path(sys.executable).with_name("localizer_node")
        args = [str(exe), "--ros-args", "-p", f"map_path:={map_dir}", "-r", f"image:={IMAGE}",
                "-r", f"image/compressed:={COMPRESSED}", "-r", f"camera_info:={INFO}", "-r", f"odom:={ODOM}",
                "-p", "diagnostics_period_s:=0.5"]
        for k, v in (params or {}).items():
            args += ["-p", f"{k}:={v}"]
        self.log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        if not rclpy.ok():
            rclpy.init()
        self.node = rclpy.create_node(f"visloc_reliability_{os.getpid()}")
        n = self.node
        self.pub = {"image": n.create_publisher(Image, IMAGE, qos_profile_sensor_data),
                    "compressed": n.create_publisher(CompressedImage, COMPRESSED, qos_profile_sensor_data),
                    "info": n.create_publisher(CameraInfo, INFO, qos_profile_sensor_data),
                    "odom": n.create_publisher(Odometry, ODOM, qos_profile_sensor_data)}
        self.lock = threading.Lock()
        self.poses: deque = deque(maxlen=1_000_000)  # (receipt ns, stamp ns)
        self.verified: deque = deque(maxlen=1_000_000)
        self.status: dict[int, tuple[int, str]] = {}  # stamp ns -> (state, message)
        self.status_order: deque = deque(maxlen=10_000)
        self.diag: dict[str, str] = {}

        def stamp_ns(h):
            return h.stamp.sec * 1_000_000_000 + h.stamp.nanosec

        n.create_subscription(PoseWithCovarianceStamped, "/visloc/pose",
                              lambda m: self.poses.append((time.time_ns(), stamp_ns(m.header))), 1000)
        n.create_subscription(PoseWithCovarianceStamped, "/visloc/pose_verified",
                              lambda m: self.verified.append((time.time_ns(), stamp_ns(m.header))), 1000)

        def on_status(m):
            with self.lock:
                k = stamp_ns(m.header)
                self.status[k] = (m.state, m.message)
                self.status_order.append(k)
                if len(self.status) > 20_000:
                    for old in list(self.status)[:10_000]:
                        del self.status[old]

        n.create_subscription(LocalizationStatus, "/visloc/status", on_status, 1000)

        def on_diag(m):
            for st in m.status:
                if st.name.startswith("visloc"):
                    with self.lock:
                        self.diag = {kv.key: kv.value for kv in st.values}

        n.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(n)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running:
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutdown while spinning
                if self._running:
                    raise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float | None:
        return rss_mb(self.proc.pid)

    def wait_ready(self, timeout: float = 120.0, topic: str = IMAGE) -> None:
        """Until the node publishes poses and has subscribed to the camera (the map loaded, the node active)."""
        end = time.time() + timeout
        while time.time() < end:
            if not self.alive():
                raise RuntimeError(f"localizer_node exited with {self.proc.returncode} while starting")
            if self.node.count_subscribers(topic) > 0 and self.node.count_publishers("/visloc/pose") > 0:
                time.sleep(1.0)
                return
            time.sleep(0.2)
        raise RuntimeError("localizer_node did not become active")

    def wait_status(self, stamp_ns: int, timeout: float = 5.0) -> tuple[int, str] | None:
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if stamp_ns in self.status:
                    return self.status[stamp_ns]
            time.sleep(0.002)
        return None

    def diagnostics(self, fresh_after: float | None = None, timeout: float = 3.0) -> dict[str, str]:
        """The latest diagnostics (with ``fresh_after``: the first published after that time.time())."""
        if fresh_after is not None:
            with self.lock:
                self.diag = {}
            end = time.time() + timeout
            while time.time() < end:
                with self.lock:
                    if self.diag:
                        break
                time.sleep(0.05)
        with self.lock:
            return dict(self.diag)

    def close(self) -> int | None:
        """Stop the node (SIGINT, as ros2 launch does) and the client; the node's exit code."""
        import rclpy

        self._running = False
        self._spin.join(timeout=2.0)
        code = None
        if self.alive():
            self.proc.send_signal(2)
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        else:
            code = self.proc.returncode
        self.executor.shutdown()
        self.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        if self.log is not subprocess.DEVNULL:
            self.log.close()
        return code
