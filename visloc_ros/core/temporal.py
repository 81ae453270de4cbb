"""Sequence localization: a particle filter over map positions, fed by each frame's retrieval.

Motion: odometry deltas (map-frame x, y) when given, else a constant-velocity model with unknown
speed (each particle carries a velocity in map units per frame). Observation: a mixture of Gaussians
at the frame's candidate places, weighted by similarity, plus a floor so that no single bad frame
kills the filter. A share of particles is re-drawn around each frame's candidates (sensor
resetting), so a kidnapped robot is recovered within a few frames. The output covariance is the
particles' weighted covariance plus the map's spacing floor.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .localizer import Fix, Localizer
from .pose import weights


@dataclass(frozen=True)
class FilterParams:
    particles: int = 2000
    candidates: int = 50          # places per frame used as evidence
    reset_fraction: float = 0.05  # particles re-drawn around the candidates each frame
    obs_sigma_spacings: float = 1.5
    pos_noise_spacings: float = 0.5
    vel_noise_spacings: float = 0.3
    init_speed_spacings: float = 2.0
    outlier_floor: float = 0.05
    seed: int = 0


class OdometryTracker:
    """Odometry poses (odom frame) -> displacements in the map frame for the filter.

    The odom frame's rotation to the map is not known up front; each displacement is rotated by the current map
    heading of the robot (from the last fix) minus its odometry heading.
    """

    def __init__(self) -> None:
        self.prev: tuple[np.ndarray, float] | None = None

    def delta(self, odom_xy, odom_yaw: float, map_yaw: float) -> np.ndarray | None:
        cur = (np.asarray(odom_xy, float)[:2].copy(), float(odom_yaw))
        prev, self.prev = self.prev, cur
        if prev is None or not np.isfinite(map_yaw):
            return None
        d = cur[0] - prev[0]
        rot = map_yaw - cur[1]
        c, s = np.cos(rot), np.sin(rot)
        return np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])


class SequenceFilter:
    """Wraps a :class:`Localizer`; ``update(image, odom_delta=None) -> Fix`` per frame."""

    def __init__(self, localizer: Localizer, params: FilterParams = FilterParams()):
        self.loc = localizer
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        self.spacing = localizer.pose_model.spacing
        self.pos = None
        self.vel = None

    def reset(self) -> None:
        self.pos = self.vel = None

    def _draw_around(self, xy: np.ndarray, wc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        pick = self.rng.choice(len(xy), n, p=wc / wc.sum())
        pos = xy[pick] + self.rng.normal(0, self.p.obs_sigma_spacings * self.spacing, (n, 2))
        vel = self.rng.normal(0, self.p.init_speed_spacings * self.spacing, (n, 2))
        return pos, vel

    def update(self, image: np.ndarray, odom_delta: np.ndarray | None = None, stamp: float | None = None) -> Fix:
        """One frame: localize, predict particles, weight by the candidates, resample, estimate."""
        z, cond, timings = self.loc.embed(image)
        fix = self.loc.localize_latent(z, timings=timings, n_candidates=self.p.candidates)
        fix.condition, fix.stamp = cond, stamp
        return self.update_fix(fix, odom_delta)

    def update_fix(self, fix: Fix, odom_delta: np.ndarray | None = None) -> Fix:
        """The filter step on a single-image fix that carries ``candidates`` places (updated in place)."""
        loc, p, s = self.loc, self.p, self.spacing
        t0 = time.perf_counter()
        cxy = loc.map.places.xyz[fix.candidate_ids, :2]
        wc = weights(fix.candidate_scores, loc.pose_model.temperature)
        n = p.particles
        if self.pos is None:
            self.pos, self.vel = self._draw_around(cxy, wc, n)
        elif odom_delta is not None:
            self.pos += np.asarray(odom_delta, float)[:2] + self.rng.normal(0, p.pos_noise_spacings * s, (n, 2))
        else:
            self.vel += self.rng.normal(0, p.vel_noise_spacings * s, (n, 2))
            self.pos += self.vel + self.rng.normal(0, p.pos_noise_spacings * s, (n, 2))
        # squared distances particle-candidate as |p|^2 - 2 p.c + |c|^2 (no (n, k, 2) temporary), then the
        # Gaussian mixture as one matrix-vector product
        d2 = (self.pos ** 2).sum(1)[:, None] - 2.0 * (self.pos @ cxy.T) + (cxy ** 2).sum(1)[None]
        lik = np.exp(-0.5 * np.maximum(d2, 0.0) / (p.obs_sigma_spacings * s) ** 2) @ (wc / wc.sum()) + p.outlier_floor
        w = lik / lik.sum()
        # systematic resampling, then sensor resetting around this frame's candidates
        idx = np.minimum(np.searchsorted(np.cumsum(w), (self.rng.random() + np.arange(n)) / n), n - 1)
        self.pos, self.vel = self.pos[idx], self.vel[idx]
        k = int(p.reset_fraction * n)
        if k:
            self.pos[:k], self.vel[:k] = self._draw_around(cxy, wc, k)
        # estimate: mean shift from the median to the main mode; covariance over all particles
        centre = np.median(self.pos, axis=0)
        r = loc.pose_model.radius
        for _ in range(5):
            near = np.linalg.norm(self.pos - centre, axis=1) <= r
            if not near.any():
                break
            centre = self.pos[near].mean(0)
        d = self.pos - centre
        fix.cov2 = (d.T @ d) / n + (s ** 2) * np.eye(2)  # a split belief stays wide
        fix.xyz = np.array([centre[0], centre[1], fix.xyz[2]])
        fix.cov6 = fix.cov6.copy()
        fix.cov6[:2, :2] = fix.cov2
        fix.support = float(np.mean(np.linalg.norm(d, axis=1) <= r))
        loc.set_geodetic(fix)
        fix.timings_ms["sequence"] = (time.perf_counter() - t0) * 1e3
        return fix
