"""The place filter (``kind="places"``), the other sequence filter: a histogram filter over the map's places themselves,
max-product (a causal Viterbi): each place's belief is the frame's evidence plus the best belief among the places
within reach of it a frame ago (around where odometry carries each place, when given), or the best belief
anywhere minus a jump penalty (a kidnapping); without odometry each place is held by an agile model (any step
within reach) and a steady one (steps near the velocity its path carries), so the belief keeps a stream's pace
through frames that say nothing. The estimate is the best place, its covariance the spread of the belief
sharpened by a temperature. No randomness: every run gives the same estimates.
"""
from __future__ import annotations

import time

import numpy as np

from .filter_params import FilterParams
from .localizer import Embedding, Fix, Localizer
from .map_filter import MapFilter


def _neighbours(xy: np.ndarray, *reaches: float, chunk: int = 500) -> list[np.ndarray]:
    """For each of ``reaches``, in one pass over the pairwise distances: (N, K) indices of the places within that
    reach of each place (itself included), padded with its own index."""
    rows = [[] for _ in reaches]
    for a in range(0, len(xy), chunk):
        d2 = ((xy[a:a + chunk, None, :] - xy[None, :, :]) ** 2).sum(2)
        for out, reach in zip(rows, reaches):
            out += [np.flatnonzero(r <= reach * reach) for r in d2]
    tables = []
    for out in rows:
        nb = np.tile(np.arange(len(xy))[:, None], (1, max(len(r) for r in out)))
        for i, r in enumerate(out):
            nb[i, :len(r)] = r
        tables.append(nb)
    return tables


class PlaceFilter(MapFilter):
    """A histogram filter over the map's places, max-product (causal Viterbi); same interface as
    :class:`SequenceFilter`. Each frame, place ``j``'s log-belief becomes ``beta_places * evidence[j]`` plus the
    best of (the best log-belief among the places within ``place_reach_spacings`` of ``j``; with odometry, among
    the places the odometry step carries within ``place_reach_odom_spacings`` of ``j``) and (the best log-belief
    anywhere + ``log(place_jump)``: the robot was carried off). Without odometry and with ``place_switch`` > 0
    (the default) each place is held by two models, this agile one and a steady one that favours the step its
    path's velocity predicts (:meth:`_two_models`). The estimate is the best place; the covariance is the spread of
    the places weighted by ``exp(log-belief / place_temperature)`` about it, plus the place spacing squared, times
    ``cov_scale_places``. Deterministic: no particles, no seed. Cost per frame grows with places x neighbours
    within reach (Nordland 1,788 x 7: about 1 ms; the campus 563 x 59: 2 ms)."""

    def __init__(self, localizer: Localizer, params: FilterParams | None = None,
                 tables_from: "MapFilter | None" = None):
        super().__init__(localizer, params, tables_from)
        s, p = self.spacing, self.p
        self.nb, self.nb_odom = _neighbours(self.xy, p.place_reach_spacings * s, p.place_reach_odom_spacings * s)
        step = (self.xy[:, None, :] - self.xy[self.nb]).astype(np.float32)  # (N, K, 2): from nb[i, k] to i
        # the same, neighbour-major (K, N), for the steady model: x and y parts of the steps, -inf on the padding
        self.nb_t = np.ascontiguousarray(self.nb.T)
        self.step_t = tuple(np.ascontiguousarray(step[..., c].T) for c in (0, 1))
        deg = (self.nb != np.arange(len(self.xy))[:, None]).sum(1) + 1  # real neighbours, itself included
        self.pad_t = np.where(np.arange(self.nb.shape[1])[:, None] < deg[None, :], 0.0, -np.inf).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the robot: the belief, running averages and odometry state (the map's tables are kept)."""
        super().reset()
        self.logb = None
        self.models = None  # without odometry, with place_switch: (2, N) log-beliefs, agile and steady
        self.pending = np.zeros(2)  # odometry not yet carried into the belief (less than half a spacing)

    def update_embedding(self, emb: Embedding, odom_pose=None, stamp: float | None = None,
                         odom_delta: np.ndarray | None = None, sims: np.ndarray | None = None) -> Fix:
        """The filter step on a frame's embedding (see :meth:`update`; ``sims`` as in :class:`SequenceFilter`)."""
        p, s = self.p, self.spacing
        fix, sims = self._localize(emb, stamp, sims)
        if odom_pose is not None:
            odom_delta = self.odometry.delta(odom_pose[:2], odom_pose[2], self.last_yaw)
        t0 = time.perf_counter()
        # the hub means at once: this filter's max-product carry keeps the places behind the odometry's landing
        # place as likely as it, and the lead of the undelayed evidence offsets that (delayed: the night tunnel
        # 69 -> 65 %, the building 89 -> 85 % within 2 m)
        e = p.beta_places * self._evidence(emb, fix, odom_delta is not None, sims, delayed=False)
        if self.logb is None:
            logb = e
        elif odom_delta is None and p.place_switch > 0:
            logb = self._two_models(e)
        else:
            self.models = None
            if odom_delta is None:
                prior = self.logb[self.nb].max(1)
            else:
                # odometry steps are summed until they reach half a place spacing (smaller ones would round back
                # to the same place); then each place's belief is carried along the sum to the place nearest where
                # it lands, and spread within place_reach_odom_spacings of there (the odometry's error)
                self.pending += np.asarray(odom_delta, float)[:2]
                if float(np.hypot(*self.pending)) < 0.5 * s:
                    prior = self.logb
                else:
                    to, _ = self.lookup.nearest_place(self.xy + self.pending)
                    self.pending[:] = 0.0
                    moved = np.full(len(self.xy), -np.inf)
                    np.maximum.at(moved, to[to >= 0], self.logb[to >= 0])
                    prior = moved[self.nb_odom].max(1)
            logb = e + np.maximum(prior, float(self.logb.max()) + np.log(p.place_jump))
        self.logb = logb = logb - logb.max()
        best = int(np.argmax(logb))
        w = np.exp(logb.astype(np.float64) / p.place_temperature)
        w /= w.sum()
        d = self.xy - self.xy[best]
        cov2 = ((w[:, None] * d).T @ d + (s ** 2) * np.eye(2)) * p.cov_scale_places
        support = min(1.0, float(w[np.einsum("ij,ij->i", d, d) <= (p.mode_radius_spacings * s) ** 2].sum()))
        self._set_estimate(fix, self.xy[best], cov2, support)
        return self._finish(fix, t0)

    def _follow(self, v: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Velocities (M, 2) after taking ``step`` (M, 2): the speed follows the step's length slowly (the pace),
        the heading its direction quickly (the turns of the path)."""
        p = self.p
        speed = np.hypot(v[:, 0], v[:, 1])
        speed += p.place_speed_rate * (np.hypot(step[:, 0], step[:, 1]) - speed)
        head = v + p.place_heading_rate * (step - v)
        return head * (speed / np.maximum(np.hypot(head[:, 0], head[:, 1]), 1e-9))[:, None]

    def _steady_bonus(self, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
        """(M, K, N) log-odds of the steady model against the agile one for the step from place ``nb[i, k]``
        (moving at ``(vx, vy)[m, nb[i, k]]``; each (M, N)) to place ``i``: a Gaussian about the velocity,
        normalised over the places within reach of the predecessor, against the agile model's even chance among the
        ``2 * reach + 1`` places a path within reach holds (counted along a path, so that a 2-D map's crowd of
        places does not make standing still a bargain). Arrays are laid out neighbour-major, (K, N): numpy
        reduces and gathers those far faster than over a trailing axis of 7."""
        p = self.p
        inv = np.float32(0.5 / (p.place_velocity_sigma_spacings * self.spacing) ** 2)
        sx, sy = self.step_t
        # each place's steps to its neighbours (-step), less its velocity, squared; padding -inf
        z = -inv * ((sx + vx[:, None, :]) ** 2 + (sy + vy[:, None, :]) ** 2) + self.pad_t
        zmax = z.max(1)
        norm = zmax + np.log(np.exp(z - zmax[:, None, :]).sum(1)) - np.float32(np.log(2 * p.place_reach_spacings + 1))
        take = lambda a: np.take(a, self.nb_t, axis=1)  # noqa: E731  (M, N) -> (M, K, N) at the predecessors
        return -inv * ((sx - take(vx)) ** 2 + (sy - take(vy)) ** 2) - take(norm)

    def _two_models(self, e: np.ndarray) -> np.ndarray:
        """Without odometry: each place held twice, by an agile model (any step within reach, free: the
        max-product step of the class's text) and a steady one (a step near the velocity the path carries: a
        bonus while the stream keeps its pace, a cost when it does not, :meth:`_steady_bonus`); a path changes
        model at ``place_switch`` per frame, and a jump lands in the agile model at unknown speed. Each place's
        velocity is its best path's (:meth:`_follow`). Returns each place's best log-belief of the two."""
        p = self.p
        n, rows = len(self.xy), np.arange(len(self.xy))
        k_n = self.nb_t.shape[0]
        if self.models is None:
            self.models = np.stack([self.logb, self.logb]).astype(np.float32)
            self.mvel = np.zeros((2, 2, n), np.float32)  # (model, x/y, place)
        L, V = self.models, self.mvel
        stay, switch = np.float32(np.log1p(-p.place_switch)), np.float32(np.log(p.place_switch))
        bonus = self._steady_bonus(V[:, 0], V[:, 1])  # (2 sources, K, N)
        held = np.take(L, self.nb_t, axis=1)  # (2 sources, K, N): the predecessors' log-beliefs
        new_L, new_V = np.empty_like(L), np.empty_like(V)
        for m in (0, 1):  # into the agile (0) and the steady (1) model, from either
            score = held + np.array([stay if src == m else switch for src in (0, 1)], np.float32)[:, None, None]
            if m:
                score += bonus
            flat = score.reshape(2 * k_n, n)
            best = flat.argmax(0)
            src, k = np.divmod(best, k_n)
            prior = flat[best, rows]
            j = self.nb_t[k, rows]
            new_V[m] = self._follow(V[src, :, j], np.stack([self.step_t[0][k, rows], self.step_t[1][k, rows]], 1)).T
            if m == 0:
                jump = float(L.max()) + np.log(p.place_jump)
                new_V[m][:, prior < jump] = 0.0
                prior = np.maximum(prior, jump)
            new_L[m] = e + prior
        new_L -= new_L.max()
        self.models, self.mvel = new_L, new_V
        return new_L.max(0)
