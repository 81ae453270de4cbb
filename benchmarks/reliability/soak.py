"""Soak: the real node fed camera + odometry at 30 Hz for N minutes; memory, answers and latency over time."""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np

from .rig import NodeRig

RATE_HZ = 30.0
SAMPLE_S = 5.0


def load_run(run_dir: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A recorded run's frames (RGB) and wheel odometry per frame (x, y, yaw), from `visloc demo`'s folders."""
    from visloc_ros.core.preprocess import load_image

    with open(run_dir / "frames.csv") as f:
        frames = [r["image"] for r in csv.DictReader(f)]
    with open(run_dir / "odometry.csv") as f:
        odo = {r["image"]: (float(r["x"]), float(r["y"]), float(r["yaw"])) for r in csv.DictReader(f)}
    return [load_image(run_dir / i) for i in frames], np.array([odo[i] for i in frames])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SE(2) a * b for (x, y, yaw)."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return np.array([a[0] + c * b[0] - s * b[1], a[1] + s * b[0] + c * b[1], a[2] + b[2]])


def _inverse(a: np.ndarray) -> np.ndarray:
    c, s = math.cos(a[2]), math.sin(a[2])
    return np.array([-(c * a[0] + s * a[1]), s * a[0] - c * a[1], -a[2]])


def run(map_dir: Path, run_dir: Path, minutes: float, out_dir: Path, log=print) -> dict:
    from geometry_msgs.msg import Quaternion
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image

    frames, odo = load_run(run_dir)
    h, w = frames[0].shape[:2]
    data = [f.tobytes() for f in frames]
    rig = NodeRig(map_dir, {"sequence": "true"}, out_dir / "soak_node.log")
    samples, t_start = [], None
    sent = 0
    try:
        rig.wait_ready()
        duration = minutes * 60.0
        warmup_s = min(max(60.0, 0.1 * duration), 0.5 * duration)
        offset = np.zeros(3)  # odometry stays continuous when the recorded run starts over (the images jump)
        t_start = time.monotonic()
        next_sample = t_start + SAMPLE_S
        last_poses = 0
        log(f"soak: {minutes:g} min at {RATE_HZ:g} Hz, {len(frames)} recorded frames looped, node pid {rig.proc.pid}")
        while True:
            now = time.monotonic()
            if now - t_start >= duration or not rig.alive():
                break
            i = sent % len(frames)
            if i == 0 and sent:
                offset = _compose(_compose(offset, odo[-1]), _inverse(odo[0]))
            stamp = time.time_ns()
            sec, nsec = divmod(stamp, 1_000_000_000)
            m = Image()
            m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = sec, nsec, "camera"
            m.height, m.width, m.encoding, m.step, m.data = h, w, "rgb8", w * 3, data[i]
            o = Odometry()
            o.header = m.header
            o.header.frame_id, o.child_frame_id = "odom", "base_link"
            p = _compose(offset, odo[i])
            o.pose.pose.position.x, o.pose.pose.position.y = float(p[0]), float(p[1])
            o.pose.pose.orientation = Quaternion(z=math.sin(p[2] / 2), w=math.cos(p[2] / 2))
            rig.pub["odom"].publish(o)
            rig.pub["image"].publish(m)
            if sent % 30 == 0:
                ci = CameraInfo()
                ci.header = m.header
                ci.width, ci.height = w, h
                ci.k = [w / 2.0, 0.0, w / 2.0, 0.0, w / 2.0, h / 2.0, 0.0, 0.0, 1.0]
                rig.pub["info"].publish(ci)
            sent += 1
            if now >= next_sample:
                next_sample += SAMPLE_S
                poses = list(rig.poses)
                window = [(r - s) / 1e6 for r, s in poses[last_poses:]]
                last_poses = len(poses)
                samples.append({"t_s": round(now - t_start, 1), "rss_mb": rig.rss_mb(), "sent": sent,
                                "poses": len(poses), "verified": len(rig.verified),
                                "latency_p50_ms": float(np.percentile(window, 50)) if window else None,
                                "latency_p99_ms": float(np.percentile(window, 99)) if window else None})
            delay = t_start + sent / RATE_HZ - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        time.sleep(2.0)  # the answers still in flight
        alive = rig.alive()
        diag = rig.diagnostics(fresh_after=time.time()) if alive else {}
        final_rss = rig.rss_mb()
    finally:
        poses, verified = list(rig.poses), list(rig.verified)
        code = rig.close()
    lat = np.array([(r - s) / 1e6 for r, s in poses])
    vlat = np.array([(r - s) / 1e6 for r, s in verified])
    elapsed = samples[-1]["t_s"] if samples else 0.0
    warm = next((s["rss_mb"] for s in samples if s["t_s"] >= warmup_s and s["rss_mb"]), None)
    growth = None if warm is None or final_rss is None else (final_rss - warm) / warm
    report = {"minutes": round(elapsed / 60.0, 2), "rate_hz": RATE_HZ, "frames_in": sent, "poses_out": len(poses),
              "verified_out": len(verified), "answered": round(len(poses) / max(sent, 1), 4),
              "dropped": int(diag.get("frames_dropped", "0") or 0),
              "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
                             "p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None},
              "verified_latency_ms": {"p50": round(float(np.percentile(vlat, 50)), 1) if vlat.size else None,
                                      "p99": round(float(np.percentile(vlat, 99)), 1) if vlat.size else None},
              "rss_mb": {"warm": warm, "warm_at_s": warmup_s, "end": final_rss,
                         "max": max((s["rss_mb"] or 0) for s in samples) if samples else None},
              "rss_growth": None if growth is None else round(growth, 4),
              "restarts": 0 if alive else 1, "node_exit_code": code, "samples": samples}
    report["ok"] = bool(alive and growth is not None and growth <= 0.05 and len(poses) > 0)
    plot(report, out_dir / "soak.png")
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["samples"]
    if not s:
        return
    t = np.array([x["t_s"] for x in s]) / 60.0
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    a.plot(t, [x["rss_mb"] or np.nan for x in s], color="tab:blue")
    if report["rss_mb"]["warm"]:
        a.axhline(report["rss_mb"]["warm"] * 1.05, color="tab:red", ls="--", lw=1, label="warm-up RSS + 5 %")
        a.legend(loc="lower right")
    a.set_ylabel("node RSS (MiB)")
    a.set_title(f"soak: {report['frames_in']} frames at {report['rate_hz']:g} Hz, {report['poses_out']} poses, "
                f"RSS growth {100 * (report['rss_growth'] or 0):.2f} %")
    b.plot(t, [x["latency_p50_ms"] or np.nan for x in s], label="p50")
    b.plot(t, [x["latency_p99_ms"] or np.nan for x in s], label="p99")
    b.set_ylabel("stamp to pose (ms)")
    b.set_xlabel("minutes")
    b.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
