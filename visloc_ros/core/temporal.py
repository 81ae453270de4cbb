"""Sequence localization: a particle filter over map positions, fed by each frame's retrieval.

Motion: wheel odometry (odom-frame poses, turned into map-frame steps by :class:`OdometryTracker`; every
particle carries its own odometry scale) when given, else a constant-velocity model with unknown speed.
Observation: a mixture of Gaussians at the frame's candidate places, weighted by how far each candidate's
similarity exceeds its own running background (hub suppression), plus a floor that bounds what one frame can
say. A share of particles is re-drawn each frame around places the recent sequence supports (sensor
resetting; more while no mode dominates), so a kidnapped robot is recovered within a bounded number of
frames. The estimate is the main mode, kept against aliases by hysteresis; its covariance is the mode's
spread (or all particles' when the belief is split) plus the map's spacing.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .localizer import Fix, Localizer
from .pose import weights


@dataclass(frozen=True)
class FilterParams:
    particles: int = 2000
    candidates: int = 50          # places per frame used as evidence
    reset_fraction: float = 0.03  # particles re-drawn around the candidates each frame
    reset_fraction_lost: float = 0.1  # ... while the main mode holds less than half the weight
    obs_sigma_spacings: float = 1.5
    pos_noise_spacings: float = 0.5
    vel_noise_spacings: float = 0.3
    init_speed_spacings: float = 2.0
    outlier_floor: float = 1.0    # likelihood floor with odometry: one frame favours a place at most (1 + 1/floor) x
    outlier_floor_no_odom: float = 0.05  # without odometry the motion is vague, so each frame must say more
    odom_noise: float = 0.1       # relative error of an odometry step (scale and heading)
    odom_noise_m: float = 0.02    # plus this much per frame (m)
    odom_scale_sd: float = 0.03   # prior spread of the odometry scale each particle carries
    odom_scale_walk: float = 0.002  # its drift per frame
    hub_memory: float = 0.05      # rate of the per-place background similarity (hub suppression); 0 = off
    evidence_temperature: float = 0.02
    min_track_mass: float = 0.2   # the tracked mode is kept only while it holds this share of the weight
    switch_ratio: float = 3.0     # another mode must hold this many times the tracked mode's weight to take over
    hypotheses: int = 20          # best candidates per frame used by the sequence matching
    history: int = 30             # frames of candidates kept for sequence-consistent re-seeding (with odometry)
    seed: int = 0


class OdometryTracker:
    """Odometry poses (odom frame) -> displacements in the map frame for the filter.

    The rotation from the odom frame to the map is not known up front and drifts with the odometry's heading
    error; it is estimated as the circular median of (map heading of the fix - odometry heading) over the
    last ``window`` frames; this frame's own offset is used when it agrees with that median within
    ``agree_rad``, so that wrong headings (a fix in a perpendicular corridor) do not turn the robot's motion.
    """

    def __init__(self, window: int = 25, agree_rad: float = 0.35) -> None:
        self.agree = agree_rad
        self.prev: tuple[np.ndarray, float] | None = None
        self.offsets: deque = deque(maxlen=window)

    def rotation(self) -> float:
        a = np.array(self.offsets)
        cost = np.abs(np.angle(np.exp(1j * (a[:, None] - a[None])))).sum(1)
        return float(a[int(np.argmin(cost))])

    def delta(self, odom_xy, odom_yaw: float, map_yaw: float) -> np.ndarray | None:
        cur = (np.asarray(odom_xy, float)[:2].copy(), float(odom_yaw))
        prev, self.prev = self.prev, cur
        if np.isfinite(map_yaw):
            self.offsets.append(float(map_yaw) - cur[1])
        if prev is None or not self.offsets:
            return None
        d = cur[0] - prev[0]
        rot = self.rotation()
        last = self.offsets[-1]
        if abs(np.angle(np.exp(1j * (last - rot)))) <= self.agree:
            rot = last
        c, s = np.cos(rot), np.sin(rot)
        return np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])


class SequenceFilter:
    """Wraps a :class:`Localizer`; ``update(image, odom_pose=None) -> Fix`` per frame.

    ``odom_pose`` is the robot's odometry pose ``(x, y, yaw)`` in its odom frame; the filter turns it into map-frame
    motion itself (:class:`OdometryTracker`, with the heading of its own last fix). A caller that already has a
    map-frame displacement passes ``odom_delta`` instead."""

    def __init__(self, localizer: Localizer, params: FilterParams = FilterParams()):
        self.loc = localizer
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        self.spacing = localizer.pose_model.spacing
        self.pos = None
        self.vel = None
        self.scale = None
        self.centre = None
        self.mode_mass = 0.0
        self.odometry = OdometryTracker()
        self.last_yaw = float("nan")  # heading of the last fix: rotates odometry into the map frame
        self.hist: deque = deque(maxlen=max(1, params.history))
        self.odo_sum = np.zeros(2)
        self.bg = None  # per-place background similarity (hubs: places that answer every frame)

    def reset(self) -> None:
        self.pos = self.vel = self.scale = self.bg = self.centre = None
        self.mode_mass = 0.0
        self.odometry = OdometryTracker()
        self.last_yaw = float("nan")
        self.odo_sum = np.zeros(2)
        self.hist.clear()

    def _evidence(self, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Candidate weights from similarity above each place's own background, which is updated after."""
        p = self.p
        if p.hub_memory <= 0:
            return weights(scores, self.loc.pose_model.temperature)
        floor = float(scores.min())
        if self.bg is None:
            self.bg = np.full(len(self.loc.map), floor, np.float32)
        e = scores - self.bg[ids]
        self.bg *= 1.0 - p.hub_memory
        self.bg += p.hub_memory * floor
        self.bg[ids] += p.hub_memory * (scores - floor)
        return weights(e, p.evidence_temperature)

    def _hypotheses(self, cxy: np.ndarray, wc: np.ndarray, odom_delta) -> tuple[np.ndarray, np.ndarray]:
        """Where to re-seed particles: this frame's candidates, weighted by how well the last ``history`` frames'
        candidates agree with each once carried along the odometry (sequence matching). Without odometry: the
        candidates by this frame's weights."""
        p, s = self.p, self.spacing
        if odom_delta is None or p.history <= 1:
            self.hist.clear()
            return cxy, wc
        self.odo_sum = self.odo_sum + np.asarray(odom_delta, float)[:2]
        m = p.hypotheses
        top = np.argsort(-wc)[:m]
        cxy, wc = cxy[top], wc[top]
        self.hist.append((cxy, wc / wc.sum(), self.odo_sum.copy()))
        k = min(len(c) for c, _, _ in self.hist)
        hx = np.stack([c[:k] for c, _, _ in self.hist])               # (H, k, 2) past candidates
        hw = np.stack([w[:k] for _, w, _ in self.hist])               # (H, k)
        shift = self.odo_sum - np.stack([o for _, _, o in self.hist])  # (H, 2) displacement since each frame
        sig2 = (p.obs_sigma_spacings * s) ** 2 + (p.odom_noise * np.linalg.norm(shift, axis=1)) ** 2
        # each current candidate carried back to each past frame, against that frame's candidates
        d2 = (((cxy[None, :, None, :] - shift[:, None, None, :]) - hx[:, None, :, :]) ** 2).sum(3)  # (H, C, k)
        lik = np.einsum("hck,hk->hc", np.exp(-0.5 * d2 / sig2[:, None, None]), hw)
        score = np.log(lik + p.outlier_floor).sum(0)
        return cxy, np.exp(score - score.max()) * wc / wc.max()

    def _draw_around(self, xy: np.ndarray, wc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        pick = self.rng.choice(len(xy), n, p=wc / wc.sum())
        pos = xy[pick] + self.rng.normal(0, self.p.obs_sigma_spacings * self.spacing, (n, 2))
        vel = self.rng.normal(0, self.p.init_speed_spacings * self.spacing, (n, 2))
        return pos, vel

    def update(self, image: np.ndarray, odom_pose=None, stamp: float | None = None,
               odom_delta: np.ndarray | None = None) -> Fix:
        """One frame: localize, predict particles, weight by the candidates, resample, estimate."""
        z, cond, timings = self.loc.embed(image)
        fix = self.loc.localize_latent(z, timings=timings, n_candidates=self.p.candidates)
        fix.condition, fix.stamp = cond, stamp
        return self.update_fix(fix, odom_pose, odom_delta)

    def update_fix(self, fix: Fix, odom_pose=None, odom_delta: np.ndarray | None = None) -> Fix:
        """The filter step on a single-image fix that carries ``candidates`` places (updated in place)."""
        loc, p, s = self.loc, self.p, self.spacing
        if odom_pose is not None:
            odom_delta = self.odometry.delta(odom_pose[:2], odom_pose[2], self.last_yaw)
        t0 = time.perf_counter()
        cxy = loc.map.places.xyz[fix.candidate_ids, :2]
        wc = self._evidence(fix.candidate_ids, fix.candidate_scores)
        n = p.particles
        shift = None
        if self.pos is None:
            self.pos, self.vel = self._draw_around(cxy, wc, n)
            self.scale = self.rng.normal(1.0, p.odom_scale_sd, n)
        elif odom_delta is not None:
            shift = np.asarray(odom_delta, float)[:2]
            sd = p.odom_noise * float(np.hypot(*shift)) + p.odom_noise_m
            # each particle carries its own odometry scale (wheel radius error), learnt by resampling
            self.scale += self.rng.normal(0, p.odom_scale_walk, n)
            self.pos += self.scale[:, None] * shift + self.rng.normal(0, sd, (n, 2))
            shift = shift * float(self.scale.mean())  # particles are equally weighted after resampling
        else:
            self.vel += self.rng.normal(0, p.vel_noise_spacings * s, (n, 2))
            shift = self.vel.mean(0)
            self.pos += self.vel + self.rng.normal(0, p.pos_noise_spacings * s, (n, 2))
        # squared distances particle-candidate as |p|^2 - 2 p.c + |c|^2 (no (n, k, 2) temporary), then the
        # Gaussian mixture as one matrix-vector product; the floor bounds what one frame can say
        d2 = (self.pos ** 2).sum(1)[:, None] - 2.0 * (self.pos @ cxy.T) + (cxy ** 2).sum(1)[None]
        # (the first frame seeded the particles from these candidates already: weigh it lightly)
        floor = p.outlier_floor if odom_delta is not None or shift is None else p.outlier_floor_no_odom
        lik = np.exp(-0.5 * np.maximum(d2, 0.0) / (p.obs_sigma_spacings * s) ** 2) @ (wc / wc.sum()) + floor
        w = lik / lik.sum()
        self.mode_mass = self._estimate(fix, w, shift)
        idx = np.minimum(np.searchsorted(np.cumsum(w), (self.rng.random() + np.arange(n)) / n), n - 1)
        self.pos, self.vel, self.scale = self.pos[idx], self.vel[idx], self.scale[idx]
        # sensor resetting around positions that this frame, or with odometry the recent sequence, supports
        # more re-seeding while no mode dominates (start-up, after a kidnapping), as in augmented MCL
        k = int((p.reset_fraction if self.mode_mass >= 0.5 else p.reset_fraction_lost) * n)
        if k:
            hxy, hw = self._hypotheses(cxy, wc, odom_delta)
            self.pos[:k], self.vel[:k] = self._draw_around(hxy, hw, k)
            self.scale[:k] = self.rng.normal(1.0, p.odom_scale_sd, k)
        loc.set_geodetic(fix)
        self.last_yaw = fix.yaw
        fix.timings_ms["sequence"] = (time.perf_counter() - t0) * 1e3
        return fix

    def _mode(self, start: np.ndarray, w: np.ndarray, r: float) -> tuple[np.ndarray, float]:
        """Mean shift from ``start`` with particle weights ``w``; returns the mode and the weight within ``r``."""
        pos = self.pos
        centre = start
        near = np.zeros(len(pos), bool)
        for _ in range(3):
            near = ((pos - centre) ** 2).sum(1) <= r * r
            if not near.any():
                break
            centre = (w[near, None] * pos[near]).sum(0) / w[near].sum()
        return centre, float(w[near].sum())

    def _estimate(self, fix: Fix, w: np.ndarray, shift: np.ndarray | None) -> float:
        """The main mode of the particles and its covariance: the spread of the mode's own particles while it
        holds most of the weight, of all particles when the belief is split (then the ellipse says so), plus the
        map's place spacing.

        The mode reported last frame (moved by this frame's motion) is kept unless another mode holds
        ``switch_ratio`` times its weight: repetitive places (an alias some metres away) then cannot make the
        estimate flicker between modes, while a kidnapped robot's new mode still takes over. Returns the weight
        of the reported mode."""
        pos, s = self.pos, self.spacing
        n = len(pos)
        r = self.loc.pose_model.radius
        probe = pos[:: max(1, n // 100)]
        dens = ((probe ** 2).sum(1)[:, None] - 2.0 * probe @ pos.T + (pos ** 2).sum(1)[None]) <= r * r
        centre, mass = self._mode(probe[int(np.argmax(dens @ w))], w, r)
        if self.centre is not None and shift is not None:
            kept, kept_mass = self._mode(self.centre + shift, w, r)
            if kept_mass >= self.p.min_track_mass and mass < self.p.switch_ratio * kept_mass:
                centre = kept
        self.centre = centre
        d = pos - centre
        near = (d ** 2).sum(1) <= r * r
        mode_mass = float(w[near].sum())
        if mode_mass >= 0.5:
            wn = w[near] / mode_mass
            fix.cov2 = (wn[:, None] * d[near]).T @ d[near] + (s ** 2) * np.eye(2)
        else:
            fix.cov2 = (w[:, None] * d).T @ d + (s ** 2) * np.eye(2)
        fix.xyz = np.array([centre[0], centre[1], fix.xyz[2]])
        fix.cov6 = fix.cov6.copy()
        fix.cov6[:2, :2] = fix.cov2
        fix.support = mode_mass
        return mode_mass
