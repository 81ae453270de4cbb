"""Sequence localization: a particle filter over map positions, fed by each frame's similarity to every place.

Motion: wheel odometry (odom-frame poses, turned into map-frame steps by :class:`OdometryTracker`; every
particle carries its own odometry scale) when given, else a constant-velocity model with unknown speed and a
per-particle agility (how much velocity and position wander per frame), both learnt by resampling.
Observation: the frame's similarity to every place (the index's candidates on very large maps), z-scored over
the map and minus each place's running mean (hub suppression); a particle hears the evidence of its nearest
place (:class:`PlaceLookup`) and a Gaussian penalty for its distance from it (the robot is where the map has
been). With odometry the evidence is sharper but bounded by a floor, so the wheels carry the robot through
frames the camera cannot place. A share of particles is re-drawn each frame around the places this frame
supports, with the velocity of a step from one of the previous frame's places (with odometry: around places
that the recent sequence supports once carried along the odometry); more while no mode dominates, and more
still when the frames stop agreeing with the belief (augmented MCL), so a kidnapped robot is recovered within
a bounded number of frames. The estimate is the main mode, kept against aliases by hysteresis and reported
at its densest part; its covariance is the mode's spread (or all particles' when the belief is split) plus
the map's spacing.
"""
from __future__ import annotations

import time
from collections import deque

import cv2
import numpy as np

from .filter_params import FilterParams
from .localizer import Embedding, Fix, Localizer
from .map_filter import MapFilter


TRACK_BYTES = 64 << 20  # the alias check's remembered evidence beyond its window, at most


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    """2-D vector(s) ``v`` (..., 2) turned by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return v @ np.array([[c, -s], [s, c]]).T


class SequenceFilter(MapFilter):
    """Wraps a :class:`Localizer`; ``update(image, odom_pose=None) -> Fix`` per frame.

    ``odom_pose`` is the robot's odometry pose ``(x, y, yaw)`` in its odom frame; the filter turns it into map-frame
    motion itself (:class:`OdometryTracker`, with the heading of its own last fix). A caller that already has a
    map-frame displacement passes ``odom_delta`` instead."""

    def __init__(self, localizer: Localizer, params: FilterParams | None = None,
                 tables_from: "MapFilter | None" = None):
        super().__init__(localizer, params, tables_from)
        self.rng = np.random.default_rng(self.p.seed)
        self.hist: deque = deque(maxlen=max(1, self.p.history))
        self._grid = self._density_grid(self.p.mode_radius_spacings * self.spacing)
        self.reset()

    def reset(self) -> None:
        """Forget the robot: particles, running averages and odometry state (the map's tables are kept)."""
        super().reset()
        self.pos = self.vel = self.scale = self.agility = self.centre = None
        self.w_fast = self.w_slow = None  # augmented MCL: fast and slow averages of the particles' likelihood
        self.prev_places = None  # the previous frame's best places and weights (velocities of re-seeded particles)
        self.mode_mass = 0.0
        self.odo_sum = np.zeros(2)
        self.hist.clear()
        # (evidence, map-frame odometry sum) of the last alias_memory frames, at least alias_window; beyond the
        # window at most TRACK_BYTES of evidence rows (a million-place map keeps the window alone)
        rows = min(int(self.p.alias_memory), self._rows(TRACK_BYTES))
        self.track: deque = deque(maxlen=max(1, self.p.alias_window, rows))
        self.track_odo = np.zeros(2)
        self.alias_wins = 0
        self.alt = None  # the alternative hypothesis: (position, turn, score)

    def _hypotheses(self, cxy: np.ndarray, wc: np.ndarray, odom_delta) -> tuple[np.ndarray, np.ndarray]:
        """Where to re-seed particles: this frame's candidates, weighted by how well the last ``history`` frames'
        candidates agree with each once carried along the odometry (sequence matching). Without odometry: the
        candidates by this frame's weights."""
        p, s = self.p, self.spacing
        if odom_delta is None or p.history <= 1:
            self.hist.clear()
            return cxy, wc
        self.odo_sum = self.odo_sum + np.asarray(odom_delta, float)[:2]
        self.hist.append((cxy, wc / wc.sum(), self.odo_sum.copy()))
        k = min(len(c) for c, _, _ in self.hist)
        hx = np.stack([c[:k] for c, _, _ in self.hist])               # (H, k, 2) past candidates
        hw = np.stack([w[:k] for _, w, _ in self.hist])               # (H, k)
        shift = self.odo_sum - np.stack([o for _, _, o in self.hist])  # (H, 2) displacement since each frame
        sig2 = (p.obs_sigma_spacings * s) ** 2 + (p.odom_noise * np.linalg.norm(shift, axis=1)) ** 2
        # each current candidate carried back to each past frame, against that frame's candidates
        d2 = (((cxy[None, :, None, :] - shift[:, None, None, :]) - hx[:, None, :, :]) ** 2).sum(3)  # (H, C, k)
        lik = np.einsum("hck,hk->hc", np.exp(-0.5 * d2 / sig2[:, None, None]), hw)
        score = np.log(lik + p.match_floor).sum(0)
        return cxy, np.exp(score - score.max()) * wc / wc.max()

    def _augment(self, avg: float) -> None:
        p = self.p
        self.w_fast = avg if self.w_fast is None else self.w_fast + p.aug_fast * (avg - self.w_fast)
        self.w_slow = avg if self.w_slow is None else self.w_slow + p.aug_slow * (avg - self.w_slow)

    def _draw_agility(self, n: int) -> np.ndarray:
        return np.exp(self.rng.uniform(np.log(self.p.min_agility), np.log(self.p.max_agility), n))

    def _draw_around(self, xy: np.ndarray, wc: np.ndarray, n: int, prev=None) -> tuple[np.ndarray, np.ndarray]:
        """``n`` particles around the places ``xy`` (weights ``wc``). Given the previous frame's places ``prev``
        (xy, weights), a particle's velocity is the step from one of them to its own place (pairs within
        ``init_speed_spacings`` x 2, by joint weight): a robot moved to a new place keeps a plausible motion."""
        p, s = self.p, self.spacing
        vel = self.rng.normal(0, p.init_speed_spacings * s, (n, 2))
        pick = None
        if prev is not None:
            step = xy[:, None, :] - prev[0][None]                     # (C, P, 2)
            joint = wc[:, None] * prev[1][None] * ((step ** 2).sum(2) <= (2 * p.init_speed_spacings * s) ** 2)
            if joint.sum() > 0:
                pair = self.rng.choice(joint.size, n, p=(joint / joint.sum()).ravel())
                pick, before = np.unravel_index(pair, joint.shape)
                vel = step[pick, before] + self.rng.normal(0, p.seed_sigma_spacings * s, (n, 2))
        if pick is None:
            pick = self.rng.choice(len(xy), n, p=wc / wc.sum())
        pos = xy[pick] + self.rng.normal(0, p.seed_sigma_spacings * s, (n, 2))
        return pos, vel

    def update_embedding(self, emb: Embedding, odom_pose=None, stamp: float | None = None,
                         odom_delta: np.ndarray | None = None, sims: np.ndarray | None = None) -> Fix:
        """The filter step on a frame's embedding (see :meth:`update`): predict particles, weight them by the
        frame's evidence, resample, estimate. ``sims``: the frame's (fused) similarity to every place when the
        caller has it (maps up to ``DENSE_MAX`` places; the build's self-calibration passes them with the frame's
        own place left out)."""
        loc, p, s = self.loc, self.p, self.spacing
        fix, sims = self._localize(emb, stamp, sims)
        if odom_pose is not None:
            odom_delta = self.odometry.delta(odom_pose[:2], odom_pose[2], self.last_yaw)
        t0 = time.perf_counter()
        e = self._evidence(emb, fix, odom_delta is not None, sims)
        beta = p.beta_odom if odom_delta is not None else p.beta
        top = np.argpartition(-e, p.hypotheses - 1)[:p.hypotheses] if len(e) > p.hypotheses else np.arange(len(e))
        cxy = loc.map.places.xyz[top, :2]
        wc = np.exp(p.seed_beta * (e[top] - e[top].max()))
        n = p.particles
        shift = None
        if self.pos is None:
            self.pos, self.vel = self._draw_around(cxy, wc, n)
            self.scale = self.rng.normal(1.0, p.odom_scale_sd, n)
            self.agility = self._draw_agility(n)
        elif odom_delta is not None:
            shift = np.asarray(odom_delta, float)[:2]
            sd = p.odom_noise * float(np.hypot(*shift)) + p.odom_noise_m
            # each particle carries its own odometry scale (wheel radius error), learnt by resampling
            self.scale += self.rng.normal(0, p.odom_scale_walk, n)
            self.pos += self.scale[:, None] * shift + self.rng.normal(0, sd, (n, 2))
            shift = shift * float(self.scale.mean())  # particles are equally weighted after resampling
        else:
            a = self.agility[:, None] * s
            self.vel += self.rng.normal(0, 1, (n, 2)) * (p.vel_noise_spacings * a)
            shift = self.vel.mean(0)
            self.pos += self.vel + self.rng.normal(0, 1, (n, 2)) * (p.pos_noise_spacings * a)
        if shift is None:  # the particles were just drawn from this frame's evidence
            w = np.full(n, 1.0 / n)
        else:
            # each particle hears the evidence of its nearest place: log-likelihood beta * evidence
            ev, dist = self.lookup(self.pos, e)
            ll = beta * ev - 0.5 * (dist / (p.path_sigma_spacings * s)) ** 2
            w = np.exp(ll - ll.max())
            # augmented MCL: the particles' mean likelihood (1 when all sit at the frame's best place), averaged
            # fast and slow; when the fast average falls below the slow one the belief is losing the robot
            # (without odometry: with it, the sequence-matched re-seeding below finds a carried robot)
            if odom_delta is None:
                self._augment(float(np.mean(np.exp(np.minimum(ll - beta * float(e.max()), 0.0)))))
            if odom_delta is not None and p.odom_floor > 0:
                w = w + p.odom_floor
            w /= w.sum()
        self.mode_mass = self._estimate(fix, w, shift, odom_delta is not None)
        idx = np.minimum(np.searchsorted(np.cumsum(w), (self.rng.random() + np.arange(n)) / n), n - 1)
        self.pos, self.vel, self.scale, self.agility = self.pos[idx], self.vel[idx], self.scale[idx], self.agility[idx]
        # sensor resetting around positions that this frame, or with odometry the recent sequence, supports
        # more re-seeding while no mode dominates (start-up, after a kidnapping), as in augmented MCL
        frac = p.reset_fraction if self.mode_mass >= 0.5 else p.reset_fraction_lost
        if self.w_slow:
            frac = max(frac, min(p.reset_fraction_max, 1.0 - self.w_fast / self.w_slow))
        k = int(frac * n)
        if k:
            hxy, hw = self._hypotheses(cxy, wc, odom_delta)
            self.pos[:k], self.vel[:k] = self._draw_around(hxy, hw, k, self.prev_places if odom_delta is None else None)
            self.scale[:k] = self.rng.normal(1.0, p.odom_scale_sd, k)
            self.agility[:k] = self._draw_agility(k)
        self.prev_places = (cxy, wc)
        self._alias_check(fix, e, odom_delta, top)
        return self._finish(fix, t0)

    def _track_score(self, x: np.ndarray, turn: float, ev: np.ndarray, back: np.ndarray,
                     weights: np.ndarray | None = None) -> float:
        """The evidence summed along the path that ends at ``x`` and runs back along the window's odometry
        (``back``: the map-frame steps since each frame of the window), turned by ``turn`` (radians: the heading
        difference between ``x`` and the tracked position); each frame (a row of ``ev``) heard at the path's
        nearest place, its lowest evidence off the map, minus a penalty for leaving the mapped path; each frame
        times its ``weights`` when given."""
        pts = x[None, :] - _rotate(back, turn)
        place, dist = self.lookup.nearest_place(pts)
        rows = np.arange(len(ev))
        heard = np.where(place >= 0, ev[rows, np.maximum(place, 0)], ev.min(1))
        per = heard - 0.5 * (dist / (self.p.path_sigma_spacings * self.spacing)) ** 2
        return float(per.sum() if weights is None else per @ weights)

    def _heard(self, x: np.ndarray, e: np.ndarray) -> float:
        """This frame's evidence for the robot at ``x``: its nearest place's, minus the off-path penalty."""
        return self._track_score(x, 0.0, e[None], np.zeros((1, 2)))

    def _follow(self, x: np.ndarray, e: np.ndarray) -> np.ndarray:
        """The alternative's position after its odometry step, pulled onto the places that this frame supports
        near it (the evidence-weighted mean of the places within two spacings, as the particles' mode would)."""
        s = self.spacing
        d = np.linalg.norm(self.xy - x, axis=1)
        near = d <= 2.0 * s
        if not near.any():
            return x
        ll = self.p.beta_odom * e[near] - 0.5 * (d[near] / (self.p.path_sigma_spacings * s)) ** 2
        w = np.exp(ll - ll.max())
        return (w @ self.xy[near]) / w.sum()

    def _alias_check(self, fix: Fix, e: np.ndarray, odom_delta, top: np.ndarray) -> None:
        """Look-alike places (a building's twin wings, a repeating tunnel): once the particles settle on one of two
        aliases the other one's particles die out, and single frames cannot bring them back. So one alternative
        hypothesis is kept beside the particles: a position carried along the same odometry (turned by its heading
        difference) and pulled onto the places each frame supports near it, with a running score, its evidence
        minus the tracked position's, forgotten at ``1 / alias_memory`` per frame (found by :meth:`_alias_search`;
        forgotten below ``-alias_drop``). The covariance takes the alternative in from a share ``alias_share`` of
        the belief up (the ellipse then says where else the robot may be); the filter moves there when its score
        passes ``alias_switch`` on ``alias_confirm`` frames in a row, and the position it leaves becomes the
        alternative."""
        p, s = self.p, self.spacing
        if odom_delta is None or p.alias_window <= 0:
            self.track.clear()
            self.track_odo = np.zeros(2)
            self.alt = None
            return
        step = np.asarray(odom_delta, float)[:2] * float(self.scale.mean())
        self.track_odo = self.track_odo + step
        self.track.append((e, self.track_odo.copy()))
        centre = fix.xyz[:2]
        if self.alt is not None:  # carry the alternative along and score this frame
            x, turn, score = self.alt
            x = self._follow(x + _rotate(step, turn), e)
            score = (1.0 - 1.0 / p.alias_memory) * score + self._heard(x, e) - self._heard(centre, e)
            near = np.linalg.norm(x - centre) < p.alias_radius_spacings * s
            self.alt = None if near or score < -p.alias_drop else (x, turn, score)
        if len(self.track) >= max(10, p.alias_window // 2):
            self._alias_search(centre, e, top)
        if self.alt is None:
            self.alias_wins = 0
            return
        x, turn, score = self.alt
        self.alias_wins = self.alias_wins + 1 if score > p.alias_switch else 0
        if self.alias_wins >= p.alias_confirm:  # move there: the particles, and the heading, go along
            n = len(self.pos)
            self.pos = x + self.rng.normal(0, p.seed_sigma_spacings * s, (n, 2))
            self.vel = np.zeros((n, 2))
            self.centre = x.copy()
            self.odometry.turn(turn)
            self._set_estimate(fix, x, fix.cov2, 1.0)
            self.alt = (centre.copy(), -turn, -score)
            self.track.clear()
            self.track_odo = np.zeros(2)
            self.alias_wins = 0
            return
        w = 1.0 / (1.0 + np.exp(-score / p.alias_temperature))
        if w >= p.alias_share:  # the alternative into the covariance, as a two-point mixture (with less of the
            # belief than that it lies outside the 95 % region anyway)
            d = x - centre  # the mixture's spread about the reported (tracked) position
            self._set_estimate(fix, centre, fix.cov2 + w * np.outer(d, d), fix.support)

    def _alias_search(self, centre: np.ndarray, e: np.ndarray, top: np.ndarray) -> None:
        """The best of this frame's distant places (``alias_radius_spacings`` away or more) as the alternative: each
        one's path over the last ``alias_window`` frames, turned both ways along its corridor, scored against the
        tracked position's path; the best one, scored again over the whole remembered track, replaces the kept
        alternative when it scores higher and lies elsewhere."""
        p, s = self.p, self.spacing
        xy = self.xy
        far = top[np.linalg.norm(xy[top] - centre, axis=1) > p.alias_radius_spacings * s]
        if len(far) == 0:
            return
        h0 = self._map_heading(centre, directed=False)
        ev, back = self._remembered(p.alias_window)
        own = self._track_score(centre, 0.0, ev, back)
        best, best_x, best_turn = -np.inf, None, 0.0
        for j in far[np.argsort(-e[far])][:5]:
            x = xy[j]
            h1 = self._map_heading(x, directed=False)
            dh = 0.0 if not (np.isfinite(h0) and np.isfinite(h1)) else h1 - h0
            for turn in (dh, dh + np.pi):
                sc = self._track_score(x, turn, ev, back)
                if sc > best:
                    best, best_x, best_turn = sc, x, turn
        gain = best - own
        if gain <= -p.alias_drop or (self.alt is not None and gain <= self.alt[2]):
            return
        # near the kept alternative it is the same alias, whose running score is kept: the best of this frame's
        # paths scores high by selection alone, and replacing the score with it each frame kept the twin wings'
        # and the tunnel's aliases in the ellipse for most of a run
        if self.alt is None or np.linalg.norm(best_x - self.alt[0]) > p.alias_radius_spacings * s:
            # its starting score as the running score would stand had it been kept all along: the path over the
            # whole remembered track, each frame forgotten as the running score forgets it (the window alone let a
            # repeat of the tunnel that the older frames rule out into the ellipse on 41 % of the frames)
            if len(self.track) > len(ev):
                ev_all, back_all = self._remembered(len(self.track))
                forget = (1.0 - 1.0 / p.alias_memory) ** np.arange(len(ev_all))[::-1]
                gain = (self._track_score(best_x, best_turn, ev_all, back_all, forget)
                        - self._track_score(centre, 0.0, ev_all, back_all, forget))
                if gain <= -p.alias_drop or (self.alt is not None and gain <= self.alt[2]):
                    return
            self.alt = (best_x.copy(), best_turn, gain)

    def _remembered(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``k`` frames of the track: their evidence (k, places) and the map-frame odometry since each."""
        frames = list(self.track)[-k:]
        return (np.stack([v for v, _ in frames]),
                self.track_odo - np.stack([o for _, o in frames]))

    def _within(self, centre: np.ndarray, r: float) -> np.ndarray:
        """Which particles lie within ``r`` of ``centre``."""
        d = self.pos - centre
        return np.einsum("ij,ij->i", d, d) <= r * r

    def _mode(self, start: np.ndarray, w: np.ndarray, r: float) -> tuple[np.ndarray, float]:
        """Mean shift from ``start`` with particle weights ``w``; returns the mode and the weight within ``r``."""
        centre, mass = start, 0.0
        for _ in range(3):
            wn = np.where(self._within(centre, r), w, 0.0)
            mass = float(wn.sum())
            if mass <= 0.0:
                break
            centre = (wn @ self.pos) / mass
        return centre, mass

    def _density_grid(self, r: float) -> tuple[np.ndarray, float, int, int]:
        """The estimate's density grid over the map (the place lookup's extent): origin, cell size (``2r/3``, larger
        on maps that would need more than a million cells) and its width and height in cells."""
        lo = self.lookup.lo
        ext = np.array([self.lookup.w, self.lookup.h]) * self.lookup.cell
        cell = 2.0 * r / 3.0
        while np.prod(np.ceil(ext / cell)) > 1_000_000:
            cell *= 1.5
        w_cells, h_cells = np.ceil(ext / cell).astype(int)
        return lo, cell, int(w_cells), int(h_cells)

    def _densest(self, w: np.ndarray) -> np.ndarray:
        """Where the particles' weight is densest: a weighted histogram of the particles on the density grid
        (particles off the map are left out: they cannot hold the mode), summed over 3 x 3 cells (a square about
        the size of the mode's disc); the weighted mean of the particles in the best window is where the mean shift
        starts."""
        lo, cell, w_cells, h_cells = self._grid
        ij = np.floor((self.pos - lo) / cell).astype(np.int64)
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < w_cells) & (ij[:, 1] >= 0) & (ij[:, 1] < h_cells)
        if not inside.any():
            return self.pos[int(np.argmax(w))]
        grid = np.bincount(ij[inside, 1] * w_cells + ij[inside, 0], weights=w[inside],
                           minlength=w_cells * h_cells).reshape(h_cells, w_cells)
        grid = cv2.boxFilter(grid, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        best = np.array(np.unravel_index(int(np.argmax(grid)), grid.shape))[::-1]
        wn = np.where(inside & (np.abs(ij - best).max(1) <= 1), w, 0.0)
        return (wn @ self.pos) / wn.sum()

    def _estimate(self, fix: Fix, w: np.ndarray, shift: np.ndarray | None, odom: bool) -> float:
        """The main mode of the particles and its covariance: the spread of the mode's own particles while it
        holds most of the weight, of all particles when the belief is split (then the ellipse says so), plus the
        map's place spacing; all times the fitted ``cov_scale`` (``cov_scale_odom`` with odometry).

        The mode reported last frame (moved by this frame's motion) is kept unless another mode holds
        ``switch_ratio`` times its weight: repetitive places (an alias some metres away) then cannot make the
        estimate flicker between modes, while a kidnapped robot's new mode still takes over. Returns the weight
        of the reported mode."""
        pos, s = self.pos, self.spacing
        r = self.p.mode_radius_spacings * s
        centre, mass = self._mode(self._densest(w), w, r)
        if self.centre is not None and shift is not None:
            kept, kept_mass = self._mode(self.centre + shift, w, r)
            if kept_mass >= self.p.min_track_mass and mass < self.p.switch_ratio * kept_mass:
                centre = kept
        self.centre = centre
        near = self._within(centre, r)
        mode_mass = float(w[near].sum())
        # the reported position: the densest part of the mode (a wide mode's mean is pulled off a curved path)
        centre, _ = self._mode(centre, w, self.p.fine_radius_spacings * s)
        d = pos - centre
        if mode_mass >= 0.5:
            wn = w[near] / mode_mass
            cov2 = (wn[:, None] * d[near]).T @ d[near] + (s ** 2) * np.eye(2)
        else:
            cov2 = (w[:, None] * d).T @ d + (s ** 2) * np.eye(2)
        self._set_estimate(fix, centre, cov2 * (self.p.cov_scale_odom if odom else self.p.cov_scale), mode_mass)
        return mode_mass
