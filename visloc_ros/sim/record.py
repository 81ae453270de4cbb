"""Record a run through a generated world: render the camera along a trajectory, simulate IMU and wheel
odometry, and write what a robot would record (rosbag2 MCAP) plus the CSV dataset of the camera frames.

Bag topics: ``/camera/image_raw`` (rgb8), ``/camera/camera_info``, ``/imu/data`` (200 Hz), ``/odom``
(50 Hz, frame ``odom``), ``/ground_truth/pose`` (50 Hz, base_link in ``map``). The CSV (``frames.csv``)
has ``image,stamp_ns,x,y,z,qx,qy,qz,qw,condition``, images in ``images/``; ``odometry.csv`` has the
odometry at the camera frames (``image,stamp_ns,x,y,yaw``, odom frame) for ``visloc localize --sequence
--odometry-csv`` without the bag.
"""
from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..tools.odometry import OdomSpec, simulate_odometry
from .render import Camera, lighting
from .sensors import ImuSpec, Trajectory, camera_info, simulate_imu
from .worlds import World

T0_NS = 1_700_000_000_000_000_000  # stamps start here (a plausible wall-clock epoch)


@dataclass
class Run:
    """A recorded run: where its files are and the sensor streams (for tests and the demo)."""

    dir: Path
    csv: Path
    bag: Path | None
    frames: np.ndarray        # indices into the trajectory of the camera frames
    traj: Trajectory
    odom_xy: np.ndarray       # odometry at the camera frames
    odom_yaw: np.ndarray


def record(world: World, traj: Trajectory, condition: str, out: str | Path, *, camera_hz: float, seed: int,
           width: int = 320, height: int = 240, bag: bool = True, imu: ImuSpec = ImuSpec(),
           odom: OdomSpec = OdomSpec(), progress=None) -> Run:
    """Render and write one run into ``out`` (created; must not hold a previous run)."""
    from ..tools.bag import BagWriter

    out = Path(out)
    if (out / "frames.csv").exists():
        from ..core.errors import VislocError
        raise VislocError(f"{out} already holds a recorded run")
    lighting(condition)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rate = traj.rate_hz
    step_cam, step_odom = int(round(rate / camera_hz)), int(round(rate / odom.rate_hz))
    frames = np.arange(0, len(traj), step_cam)
    o_idx = np.arange(0, len(traj), step_odom)
    stamps = T0_NS + np.round(traj.t * 1e9).astype(np.int64)
    quat = traj.quaternions()
    od = simulate_odometry(traj.t[o_idx], traj.xyz[o_idx, :2], traj.rpy[o_idx, 2], odom, seed + 11)
    # odometry at the camera frames: camera frames fall on the odometry grid when camera_hz divides odom rate
    at = np.searchsorted(o_idx, frames).clip(0, len(o_idx) - 1)
    calib = camera_info(width, height, world.fovy)
    rows = []
    cam_set = {int(i): k for k, i in enumerate(frames)}
    o_set = {int(i): k for k, i in enumerate(o_idx)}
    with contextlib.ExitStack() as stack:
        cam = stack.enter_context(Camera(world, condition, width, height, seed + 23))
        writer = stack.enter_context(BagWriter(out / "bag", camera_frame="camera")) if bag else None
        imu_data = simulate_imu(traj, imu, seed + 5) if writer is not None else None
        bar = progress(total=len(frames), desc=f"rendering {world.name} ({condition})") if progress else None
        if bar:
            stack.callback(bar.close)
        for i in range(len(traj)):
            t = int(stamps[i])
            if writer is not None:
                writer.imu(t, imu_data.gyro[i], imu_data.accel[i], imu.gyro_noise ** 2 * rate,
                           imu.accel_noise ** 2 * rate)
                if i in o_set:
                    k = o_set[i]
                    writer.odometry(t, od.xy[k, 0], od.xy[k, 1], od.yaw[k], od.v[k], od.w[k],
                                    twist_var=(odom.speed_noise ** 2, odom.yaw_rate_noise ** 2))
                    writer.pose(t, traj.xyz[i], quat[i])
            if i not in cam_set:
                continue
            rgb = cam.render(traj.xyz[i], traj.rpy[i])
            name = f"images/{cam_set[i]:06d}.png"
            cv2.imwrite(str(out / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if writer is not None:
                writer.image(t, rgb)
                writer.camera_info(t, calib)
            p, q = traj.xyz[i], quat[i]
            rows.append({"image": name, "stamp_ns": t, "x": f"{p[0]:.4f}", "y": f"{p[1]:.4f}", "z": f"{p[2]:.4f}",
                         "qx": f"{q[0]:.6f}", "qy": f"{q[1]:.6f}", "qz": f"{q[2]:.6f}", "qw": f"{q[3]:.6f}",
                         "condition": condition})
            if bar:
                bar.update(1)
    _write_csv(out / "frames.csv", rows)
    _write_csv(out / "odometry.csv", [{"image": r["image"], "stamp_ns": int(stamps[f]), "x": f"{od.xy[k, 0]:.5f}",
                                       "y": f"{od.xy[k, 1]:.5f}", "yaw": f"{od.yaw[k]:.6f}"}
                                      for r, f, k in zip(rows, frames, at)])
    return Run(out, out / "frames.csv", out / "bag" if bag else None, frames, traj, od.xy[at], od.yaw[at])


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
