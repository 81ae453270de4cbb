"""Simulated wheel odometry from planar ground truth: measured forward speed with a scale error (drawn per run)
and white noise, measured yaw rate with a constant bias (drawn per run) and white noise, integrated into an
``odom``-frame pose that drifts. Used by the generated worlds' robot and by ``visloc bag from-csv`` (a CSV
dataset's bag gets an odometry topic from its ground truth)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OdomSpec:
    rate_hz: float = 50.0
    scale_error: float = 0.02      # std of the per-run wheel-radius (speed scale) error
    speed_noise: float = 0.02      # m/s, white
    yaw_rate_bias: float = 0.004   # rad/s, std of the per-run yaw-rate bias
    yaw_rate_noise: float = 0.01   # rad/s, white


@dataclass
class OdomData:
    t: np.ndarray
    xy: np.ndarray       # odom-frame position (starts at 0, 0)
    yaw: np.ndarray      # odom-frame heading (starts at 0)
    v: np.ndarray        # measured forward speed, m/s
    w: np.ndarray        # measured yaw rate, rad/s
    v_true: np.ndarray
    w_true: np.ndarray
    scale: float         # the run's speed scale (1 + error)
    bias: float          # the run's yaw-rate bias


def planar_rates(t: np.ndarray, xy: np.ndarray, yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward speed and yaw rate between consecutive samples (length N-1)."""
    dt = np.diff(t)
    d = np.diff(xy, axis=0)
    c, s = np.cos(yaw[:-1]), np.sin(yaw[:-1])
    fwd = c * d[:, 0] + s * d[:, 1]
    dyaw = np.arctan2(np.sin(np.diff(yaw)), np.cos(np.diff(yaw)))
    return fwd / dt, dyaw / dt


def simulate_odometry(t: np.ndarray, xy: np.ndarray, yaw: np.ndarray, spec: OdomSpec, seed: int) -> OdomData:
    """Wheel odometry from planar ground truth sampled at times ``t`` (any rate): the measured forward speed and
    yaw rate between samples, integrated (unicycle) into the drifting odom pose at every sample."""
    rng = np.random.default_rng(seed)
    v_true, w_true = planar_rates(t, xy, yaw)
    scale = 1.0 + rng.normal(0, spec.scale_error)
    bias = rng.normal(0, spec.yaw_rate_bias)
    v = v_true * scale + rng.normal(0, spec.speed_noise, len(v_true))
    w = w_true + bias + rng.normal(0, spec.yaw_rate_noise, len(w_true))
    dt = np.diff(t)
    oyaw = np.concatenate([[0.0], np.cumsum(w * dt)])
    mid = oyaw[:-1] + 0.5 * w * dt
    oxy = np.vstack([[0.0, 0.0], np.cumsum(np.stack([v * dt * np.cos(mid), v * dt * np.sin(mid)], 1), axis=0)])
    pad = lambda a: np.concatenate([a[:1], a])  # noqa: E731  rates at each sample (the first repeats)
    return OdomData(t, oxy, oyaw, pad(v), pad(w), pad(v_true), pad(w_true), float(scale), float(bias))
