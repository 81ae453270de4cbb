"""Trajectories and the sensors a robot carries along them: ground-truth 6-DoF pose, IMU, wheel odometry.

The robot's ``base_link`` carries the camera (x forward, z up, REP-103) and the IMU; poses are in the world
(``map``) frame. Noise models and their defaults:

- IMU: white noise plus a random-walk bias per axis, in continuous-time densities (gyro noise density
  rad/s/sqrt(Hz), gyro bias walk rad/s^2/sqrt(Hz), the same for the accelerometer in m/s^2); the defaults are
  the ADIS16448 figures that the EuRoC dataset publishes for its IMU, with a constant turn-on bias drawn per run.
- Wheel odometry: :mod:`visloc_ros.tools.odometry` (also used to give a CSV dataset's bag an odometry topic).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transforms3d.euler import euler2mat, euler2quat

GRAVITY = 9.81


def smooth_noise(rng: np.random.Generator, x: np.ndarray, feature: float) -> np.ndarray:
    """Zero-mean, unit-scale noise over ``x`` varying over about ``feature`` units (cubic through random knots)."""
    lo, hi = float(x.min()), float(x.max())
    n = max(4, int(np.ceil((hi - lo) / feature)) + 3)
    kx = lo + (np.arange(n) - 1) * feature
    ky = rng.normal(0, 1, n)
    i = np.clip(((x - kx[0]) / feature).astype(int), 1, n - 3)
    t = (x - kx[i]) / feature
    p0, p1, p2, p3 = ky[i - 1], ky[i], ky[i + 1], ky[i + 2]  # Catmull-Rom: C1, smooth accelerations
    return 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)


@dataclass
class Trajectory:
    """Ground truth sampled at ``rate_hz``: times (s), positions (N, 3) and roll/pitch/yaw (N, 3) of base_link."""

    t: np.ndarray
    xyz: np.ndarray
    rpy: np.ndarray
    rate_hz: float

    def __len__(self) -> int:
        return len(self.t)

    def rotations(self) -> np.ndarray:
        return np.array([euler2mat(*r, axes="sxyz") for r in self.rpy])

    def quaternions(self) -> np.ndarray:
        """(N, 4) x, y, z, w."""
        q = np.array([euler2quat(*r, axes="sxyz") for r in self.rpy])
        return q[:, [1, 2, 3, 0]]

    def body_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """True angular velocity (body frame, rad/s) and specific force (body frame, m/s^2) at each sample."""
        dt = 1.0 / self.rate_hz
        R = self.rotations()
        dR = np.einsum("nji,njk->nik", R[:-1], R[1:])           # R_i^T R_{i+1}
        w = np.stack([dR[:, 2, 1] - dR[:, 1, 2], dR[:, 0, 2] - dR[:, 2, 0], dR[:, 1, 0] - dR[:, 0, 1]], 1) / (2 * dt)
        w = np.vstack([w, w[-1:]])
        acc = np.gradient(np.gradient(self.xyz, dt, axis=0), dt, axis=0)
        f_world = acc + np.array([0.0, 0.0, GRAVITY])           # what an accelerometer at rest reads: +g up
        f_body = np.einsum("nji,nj->ni", R, f_world)             # R^T f
        return w, f_body


def _dense_path(centre: np.ndarray, closed: bool, corner_radius: float, step: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline every ``step`` m, corners rounded (moving average over ``2 * corner_radius``).
    Returns points (M, 2) and their arc length (M,)."""
    pts = np.vstack([centre, centre[:1]]) if closed else centre
    seglen = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seglen)])
    ss = np.arange(0, s[-1], step)
    p = np.stack([np.interp(ss, s, pts[:, 0]), np.interp(ss, s, pts[:, 1])], 1)
    k = int(2 * corner_radius / step) | 1
    if k > 1:
        ker = np.ones(k) / k
        h = k // 2
        if closed:
            pad = np.vstack([p[-h:], p, p[:h]])
        else:  # odd reflection at the ends: straight ends stay straight and keep their length
            pad = np.vstack([2 * p[0] - p[h:0:-1], p, 2 * p[-1] - p[-2:-h - 2:-1]])
        p = np.stack([np.convolve(pad[:, j], ker, "valid") for j in range(2)], 1)
    s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    return p, s


def drive(centre: np.ndarray, closed: bool, seed: int, *, height: float, start: float = 0.0,
          distance: float | None = None, speed: float = 1.0, speed_var: float = 0.15, lateral: float = 0.0,
          weave: float = 0.2, rate_hz: float = 200.0, corner_radius: float = 1.0, wobble_deg: float = 0.6) -> Trajectory:
    """A drive along ``centre`` from arc length ``start`` for ``distance`` m (a loop wraps around): speed
    varies smoothly around ``speed`` (m/s), the lateral offset around ``lateral`` (m, left +) by ``weave``;
    heading follows the path, with small roll/pitch/yaw wobble (body vibration, uneven floor)."""
    rng = np.random.default_rng(seed)
    p, s = _dense_path(np.asarray(centre, float), closed, corner_radius)
    total = s[-1]
    distance = (total - start) if distance is None else distance
    # time: integrate a smoothly varying speed until the distance is covered
    t_max = 3.0 * distance / speed + 10.0
    t = np.arange(0, t_max, 1.0 / rate_hz)
    v = speed * np.clip(1.0 + speed_var * smooth_noise(rng, t, 6.0), 0.3, None)
    arc = np.concatenate([[0], np.cumsum(v[:-1]) / rate_hz])
    keep = arc <= distance
    t, arc = t[keep], arc[keep]
    sa = start + arc
    sw = np.mod(sa, total) if closed else np.clip(sa, 0, total)
    cx, cy = np.interp(sw, s, p[:, 0]), np.interp(sw, s, p[:, 1])
    # heading of the centreline, interpolated (continuous, so the yaw rate has no spikes), and its left normal
    head = np.unwrap(np.arctan2(np.gradient(p[:, 1], s), np.gradient(p[:, 0], s)))
    h = np.interp(sw, s, head)
    off = lateral + weave * smooth_noise(rng, sa, 12.0)
    x, y = cx - np.sin(h) * off, cy + np.cos(h) * off
    # the robot faces along its own path: the centreline heading turned by the weave's slope
    yaw = h + np.arctan(np.gradient(off, sa))
    w = np.radians(wobble_deg)
    yaw = yaw + 0.5 * w * smooth_noise(rng, t, 1.5)
    roll, pitch = w * smooth_noise(rng, t, 0.8), w * smooth_noise(rng, t, 0.7)
    z = height + 0.01 * smooth_noise(rng, t, 0.5)
    return Trajectory(t, np.stack([x, y, z], 1), np.stack([roll, pitch, yaw], 1), rate_hz)


@dataclass(frozen=True)
class ImuSpec:
    rate_hz: float = 200.0
    gyro_noise: float = 1.6968e-4      # rad/s/sqrt(Hz)
    gyro_bias_walk: float = 1.9393e-5  # rad/s^2/sqrt(Hz)
    accel_noise: float = 2.0e-3        # m/s^2/sqrt(Hz)
    accel_bias_walk: float = 3.0e-3    # m/s^3/sqrt(Hz)
    gyro_bias0: float = 2.0e-3         # rad/s, std of the turn-on bias
    accel_bias0: float = 2.0e-2        # m/s^2, std of the turn-on bias


@dataclass
class ImuData:
    t: np.ndarray
    gyro: np.ndarray
    accel: np.ndarray
    gyro_true: np.ndarray
    accel_true: np.ndarray
    gyro_bias: np.ndarray
    accel_bias: np.ndarray


def simulate_imu(traj: Trajectory, spec: ImuSpec, seed: int) -> ImuData:
    """IMU samples at the trajectory's rate (which must be the IMU rate)."""
    if abs(traj.rate_hz - spec.rate_hz) > 1e-9:
        raise ValueError(f"trajectory sampled at {traj.rate_hz} Hz, IMU at {spec.rate_hz} Hz")
    rng = np.random.default_rng(seed)
    n, dt = len(traj), 1.0 / spec.rate_hz
    w, f = traj.body_rates()

    def channel(true, noise, walk, bias0):
        bias = rng.normal(0, bias0, 3) + np.cumsum(rng.normal(0, walk * np.sqrt(dt), (n, 3)), axis=0)
        return true + bias + rng.normal(0, noise / np.sqrt(dt), (n, 3)), bias

    gyro, bg = channel(w, spec.gyro_noise, spec.gyro_bias_walk, spec.gyro_bias0)
    accel, ba = channel(f, spec.accel_noise, spec.accel_bias_walk, spec.accel_bias0)
    return ImuData(traj.t, gyro, accel, w, f, bg, ba)


def camera_info(width: int, height: int, fovy_deg: float) -> dict:
    """Pinhole intrinsics of the rendered camera (square pixels, centred principal point, no distortion)."""
    fy = 0.5 * height / np.tan(np.radians(fovy_deg) / 2)
    return {"width": width, "height": height, "K": [fy, 0.0, width / 2, 0.0, fy, height / 2, 0.0, 0.0, 1.0],
            "D": [0.0] * 5, "model": "plumb_bob"}
