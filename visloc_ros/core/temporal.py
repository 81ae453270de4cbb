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

:class:`PlaceFilter` is the other kind (``kind="places"``): a histogram filter over the map's places themselves,
max-product (a causal Viterbi): each place's belief is the frame's evidence plus the best belief among the places
within reach of it a frame ago (around where odometry carries each place, when given), or the best belief
anywhere minus a jump penalty (a kidnapping); without odometry each place is held by an agile model (any step
within reach) and a steady one (steps near the velocity its path carries), so the belief keeps a stream's pace
through frames that say nothing. The estimate is the best place, its covariance the spread of the belief
sharpened by a temperature. No randomness: every run gives the same estimates. ``make_filter`` builds the map's
choice per mode (:class:`FilterByMode`): untuned, places without odometry and particles with it (the particles
carry the odometry's own error better: the night tunnel), or what ``visloc tune`` chose.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .appearance import zscore
from .config import FILTER_KINDS
from .localizer import DENSE_MAX, Embedding, Fix, Localizer, best_first


@dataclass(frozen=True)
class FilterParams:
    particles: int = 4000
    beta: float = 1.0             # log-likelihood per unit of evidence (z-score) without odometry
    beta_odom: float = 3.0        # ... with odometry (sharp, but bounded by odom_floor)
    odom_floor: float = 1.0       # with odometry: one frame favours a particle at most (1 + 1/floor) x
    dense_max: int = DENSE_MAX    # maps up to this many places are scored in full every frame
    candidates: int = 1000        # places scored through the index on larger maps
    reset_fraction: float = 0.03  # particles re-drawn around the candidates each frame
    reset_fraction_lost: float = 0.1  # ... while the main mode holds less than half the weight
    reset_fraction_max: float = 0.5   # ... at most, when the frames stop agreeing with the belief (augmented MCL)
    aug_fast: float = 0.5             # rates of the fast and slow averages of the particles' likelihood
    aug_slow: float = 0.05
    obs_sigma_spacings: float = 1.5  # sequence matching (with odometry): spread of a candidate carried along it
    pos_noise_spacings: float = 0.5   # without odometry, per frame, for the most agile particles
    vel_noise_spacings: float = 0.3   # (each particle carries an agility factor, log-uniform in
    min_agility: float = 0.2          # [min_agility, max_agility], learnt by resampling: steady streams
    max_agility: float = 1.0          # and jumpy ones)
    init_speed_spacings: float = 2.0
    seed_sigma_spacings: float = 0.5  # spread of re-seeded particles around their place (and of their velocity)
    path_sigma_spacings: float = 1.0  # the robot is on the mapped path, within about this distance of a place
    far_spacings: float = 3.0     # a particle farther than this from every place gets the worst place's evidence
    odom_noise: float = 0.1       # relative error of an odometry step (scale and heading)
    odom_noise_m: float = 0.02    # plus this much per frame (m)
    odom_scale_sd: float = 0.03   # prior spread of the odometry scale each particle carries
    odom_scale_walk: float = 0.002  # its drift per frame
    hub_memory: float = 0.01      # rate of each place's running mean evidence (hub suppression); 0 = off
    hub_memory_odom: float = 0.05  # ... with odometry
    hub_prior: bool = True        # start those running means at each place's likeness to the map's own images
    verify_top: int = 5           # the frame's best places whose similarities are handed out again in the order
    #                               the candidate verification ranks them (0 = the unverified similarities)
    match_floor: float = 1.0      # sequence matching: what one past frame can say about a hypothesis is bounded
    mode_radius_spacings: float = 4.0  # the estimate: mean shift over particles within this radius
    fine_radius_spacings: float = 1.0  # ... then within this radius for the reported position
    min_track_mass: float = 0.2   # the tracked mode is kept only while it holds this share of the weight
    switch_ratio: float = 3.0     # another mode must hold this many times the tracked mode's weight to take over
    seed_beta: float = 1.0        # sharper weights of the best places when re-seeding and sequence matching
    hypotheses: int = 20          # best places per frame used for re-seeding and the sequence matching
    history: int = 30             # frames of candidates kept for sequence-consistent re-seeding (with odometry)
    cov_scale: float = 1.0        # the reported covariance x this (fitted by `visloc tune`), without odometry
    cov_scale_odom: float = 1.0   # ... with odometry
    seed: int = 0
    kind: str = "places"          # the filter without odometry: "places" (PlaceFilter) or "particles" (SequenceFilter)
    kind_odom: str = "particles"  # ... with odometry
    beta_places: float = 1.0      # places: log-belief per unit of evidence
    place_reach_spacings: float = 3.0  # places: without odometry the robot moves at most this far per frame
    place_reach_odom_spacings: float = 1.5  # ... with odometry, from where the odometry carries each place
    place_jump: float = 0.01      # places: the chance per frame of a jump anywhere (a kidnapped robot)
    place_temperature: float = 0.25  # places: the covariance weighs each place by exp(log-belief / this)
    cov_scale_places: float = 1.0  # places: the reported covariance x this (self-calibrated, or `visloc tune`)
    place_switch: float = 0.05    # places, without odometry: a path's chance per frame to switch between the agile
    #                               and the steady model (0 = agile only)
    place_velocity_sigma_spacings: float = 0.75  # ... the steady model's spread of a step about the velocity
    place_speed_rate: float = 0.15  # ... how fast the speed a path carries follows its steps (slowly: a pace)
    place_heading_rate: float = 0.5  # ... and its heading (quickly: the path turns)

    @classmethod
    def for_map(cls, meta: dict, **overrides) -> "FilterParams":
        """The defaults, with the evidence strength and covariance scale that ``visloc tune`` stored in the map's
        ``map.yaml`` (section ``sequence``: ``without_odometry`` / ``with_odometry``), then ``overrides``."""
        kw = {}
        for mode, suffix in (("without_odometry", ""), ("with_odometry", "_odom")):
            fitted = ((meta or {}).get("sequence") or {}).get(mode) or {}
            if "filter" in fitted:  # the map's choice for this mode (`visloc tune`)
                kw["kind" + suffix] = fitted["filter"]
            kind = fitted.get("filter", "particles")  # the kind the top-level fit is for (self-calibration: particles)
            kinds = dict(fitted.get("by_filter") or {})  # `visloc tune` keeps the fit of every kind it tried
            kinds.setdefault(kind, {k: fitted[k] for k in ("evidence", "cov_scale") if k in fitted})
            if "cov_scale_places" in fitted:  # the build's self-calibration of the place filter
                kinds.setdefault("places", {"cov_scale": fitted["cov_scale_places"]})
            for name, f in kinds.items():
                sfx = "_places" if name == "places" else suffix
                if "evidence" in f:
                    kw["beta" + sfx] = float(f["evidence"])
                if "cov_scale" in f:
                    kw["cov_scale" + sfx] = float(f["cov_scale"])
        return replace(cls(**kw), **overrides)


def fit_summary(meta: dict, kind: str | None = None) -> str:
    """Which filter runs in each mode and where its covariance scale (and evidence strength) come from, in one line
    for the logs; ``kind``: the user's override of both (``--filter``, ``sequence_filter``), said at the end."""
    p = FilterParams.for_map(meta)
    parts = []
    for mode, mode_kind in (("without_odometry", p.kind), ("with_odometry", p.kind_odom)):
        f = ((meta or {}).get("sequence") or {}).get(mode) or {}
        if "evidence" in f:
            src = f"evidence {f['evidence']:g}, tuned on {f.get('tuned_on', 'a labelled run')}"
        elif "cov_scale" in f:
            src = "self-calibrated at build" if "skipped" not in f else f"not calibrated: {f['skipped']}"
        else:
            src = "default"
        scale = (p.cov_scale_places if mode_kind == "places" else p.cov_scale_odom if mode == "with_odometry"
                 else p.cov_scale)
        parts.append(f"{mode.replace('_', ' ')}: {mode_kind}, covariance scale {scale:g} ({src})")
    return "; ".join(parts) + (f"; running the {kind} filter" if kind else "")


def make_filter(localizer: Localizer, params: FilterParams | None = None,
                kind: str | None = None) -> "SequenceFilter | PlaceFilter | FilterByMode":
    """The sequence filter: ``params.kind`` without odometry, ``params.kind_odom`` with it (default: the map's tuned
    parameters and choices; untuned maps: places without odometry, particles with it), or ``kind`` in both modes
    when one is given (a user's override: ``--filter``, the node's ``sequence_filter``)."""
    params = params or FilterParams.for_map(localizer.map.meta)
    if kind:
        params = replace(params, kind=kind, kind_odom=kind)
    for k in (params.kind, params.kind_odom):
        if k not in FILTER_KINDS:
            raise ValueError(f"unknown sequence filter {k!r} (expected one of {', '.join(FILTER_KINDS)})")
    if params.kind != params.kind_odom:
        return FilterByMode(localizer, params)
    return (PlaceFilter if params.kind == "places" else SequenceFilter)(localizer, params)


class FilterByMode:
    """Two filters, one per mode: frames that come with odometry go to ``kind_odom``'s, frames without it to
    ``kind``'s. Only the filter of the frame's mode runs; when the mode changes (odometry starts or stops), the
    filter taking over starts afresh from the frames that follow (a kidnapping-like recovery, a few frames)."""

    def __init__(self, localizer: Localizer, params: FilterParams):
        kinds = {"places": PlaceFilter, "particles": SequenceFilter}
        self.p = params
        without = kinds[params.kind](localizer, params)
        self.filters = {False: without, True: kinds[params.kind_odom](localizer, params, tables_from=without)}
        self.mode = None

    def reset(self) -> None:
        for f in self.filters.values():
            f.reset()
        self.mode = None

    def _pick(self, odom: bool) -> "SequenceFilter | PlaceFilter":
        if self.mode is not None and self.mode != odom:
            self.filters[odom].reset()
        self.mode = odom
        return self.filters[odom]

    def update(self, image: np.ndarray, odom_pose=None, stamp: float | None = None,
               odom_delta: np.ndarray | None = None) -> Fix:
        odom = odom_pose is not None or odom_delta is not None
        return self._pick(odom).update(image, odom_pose, stamp, odom_delta)

    def update_embedding(self, emb: Embedding, odom_pose=None, stamp: float | None = None,
                         odom_delta: np.ndarray | None = None, sims: np.ndarray | None = None) -> Fix:
        odom = odom_pose is not None or odom_delta is not None
        return self._pick(odom).update_embedding(emb, odom_pose, stamp, odom_delta, sims)


class PlaceLookup:
    """The nearest map place of any position in O(1): the places rasterised at half their spacing and an OpenCV
    distance transform with labels over that raster. Places sharing a pixel answer with their best value."""

    def __init__(self, xy: np.ndarray, spacing: float, far_m: float, margin_m: float,
                 max_pixels: int = 4_000_000):
        cell = spacing / 2.0
        lo = xy.min(0) - margin_m
        ext = xy.max(0) + margin_m - lo
        while np.prod(np.floor(ext / cell) + 1) > max_pixels:
            cell *= 1.5
        self.lo, self.cell = lo, cell
        self.w, self.h = (np.floor(ext / cell) + 2).astype(int)
        pix = np.rint((xy - lo) / cell).astype(np.int64)
        occupied, self.pixel_of_place = np.unique(pix[:, 1] * self.w + pix[:, 0], return_inverse=True)
        img = np.ones(self.h * self.w, np.uint8)
        img[occupied] = 0
        dist, labels = cv2.distanceTransformWithLabels(img.reshape(self.h, self.w), cv2.DIST_L2, 5,
                                                       labelType=cv2.DIST_LABEL_PIXEL)
        # labels number the place pixels 1..K in scan order, which is the sorted order of `occupied`
        self.nearest = labels.ravel().astype(np.int64) - 1
        self.dist = dist.ravel() * cell
        self.near = self.dist <= far_m
        self.order = np.argsort(self.pixel_of_place, kind="stable")
        self.starts = np.flatnonzero(np.r_[True, np.diff(self.pixel_of_place[self.order]) != 0])

    def __call__(self, pos: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``value`` (per place) at the place nearest each of ``pos`` (N, 2), its minimum where no place is near
        (the filter can only put the robot where the map has seen); and each position's distance to that place."""
        per_pixel = np.maximum.reduceat(value[self.order], self.starts)
        ij = np.rint((pos - self.lo) / self.cell).astype(np.int64)
        flat = np.clip(ij[:, 1], 0, self.h - 1) * self.w + np.clip(ij[:, 0], 0, self.w - 1)
        return np.where(self.near[flat], per_pixel[self.nearest[flat]], per_pixel.min()), self.dist[flat]

    def nearest_place(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The index of a place nearest each of ``pos`` (N, 2) (one of them where places share a pixel), -1 where
        no place is near; and the distance to it."""
        ij = np.rint((pos - self.lo) / self.cell).astype(np.int64)
        flat = np.clip(ij[:, 1], 0, self.h - 1) * self.w + np.clip(ij[:, 0], 0, self.w - 1)
        place = self.order[self.starts[self.nearest[flat]]]
        return np.where(self.near[flat], place, -1), self.dist[flat]


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


class _MapFilter:
    """What both filters share: the map, the per-place evidence of a frame with hub suppression, the single-image
    fix computed alongside, odometry turned into map-frame steps."""

    def __init__(self, localizer: Localizer, params: FilterParams | None = None,
                 tables_from: "_MapFilter | None" = None):
        """``tables_from``: a filter on the same map with the same parameters whose nearest-place raster and hub
        prior are reused (they depend on nothing else; :class:`FilterByMode` builds its second filter so)."""
        self.loc = localizer
        self.p = params = params or FilterParams.for_map(localizer.map.meta)
        self.spacing = localizer.pose_model.spacing
        self.xy = localizer.map.places.xyz[:, :2]
        self._dense = len(self.xy) <= params.dense_max
        if tables_from is not None:
            self.lookup, self._hubness = tables_from.lookup, tables_from._hubness
            return
        self.lookup = PlaceLookup(self.xy, self.spacing, params.far_spacings * self.spacing,
                                  (params.far_spacings + 1) * self.spacing)
        self._hubness = self._map_hubness() if params.hub_prior and self._dense else None

    def _map_hubness(self, pairs: int = 4_000_000, chunk: int = 250) -> np.ndarray:
        """Each place's mean evidence (z-scored similarity) over a sample of the map's own images (2,000, fewer
        on large maps: about ``pairs`` similarities in all, at least 200 images): how much it resembles
        everything. Starting the running means there keeps hubs from winning the first frames, before the
        stream itself has shown which places answer every frame."""
        m = self.loc.map
        n = len(m)
        rows = max(200, min(2000, pairs // n))
        pick = np.sort(np.random.default_rng(0).choice(n, min(n, rows), replace=False))
        total = np.zeros(n, np.float64)
        for k in range(0, len(pick), chunk):
            rows_k = pick[k:k + chunk]
            rows = Embedding(m.latents[rows_k], None if m.appearance is None else m.appearance[rows_k],
                             None if m.regional is None else m.regional[rows_k])
            total += zscore(self.loc.similarities(rows)).sum(0)
        return (total / len(pick)).astype(np.float32)

    def reset(self) -> None:
        """Forget the robot (the map's tables are kept)."""
        self.bg = None  # per-place running mean evidence (hubs: places that answer every frame)
        self.odometry = OdometryTracker()
        self.last_yaw = float("nan")  # heading of the last fix: rotates odometry into the map frame

    def _evidence(self, e: Embedding, fix: Fix, rate: float, sims: np.ndarray | None = None) -> np.ndarray:
        """Per-place evidence of this frame: the similarity to every place (latents, fused with the appearance
        thumbnails and regional descriptors at the map's weights; the index's scored places on maps above
        ``dense_max``, the rest at their minimum) as a z-score over the places (what one frame says,
        whatever the image's overall contrast), minus each place's own running mean of it (hub suppression:
        places that answer every frame, and the stretch the robot sees all the time, count less). ``sims``: the
        frame's similarity to every place when the caller has it already."""
        n = len(self.loc.map)
        if self._dense:
            s = self.loc.similarities(e) if sims is None else sims
        else:
            s = np.full(n, float(fix.candidate_scores.min()), np.float32)
            s[fix.candidate_ids] = fix.candidate_scores
        zs = zscore(self._verified(e, s))
        if self.bg is None:
            self.bg = np.zeros(n, np.float32) if self._hubness is None else self._hubness.copy()
        e = zs - self.bg
        self.bg += rate * (zs - self.bg)
        return e

    def _verified(self, e: Embedding, s: np.ndarray) -> np.ndarray:
        """The similarities ``s`` with the ``verify_top`` highest handed out again to the same places in the order
        the candidate verification (:meth:`.Localizer.verify`) ranks them: the verification says which of the best
        places match, while every value, and so the evidence's spread over the map that the filter's strength and
        covariance were fitted for, stays as it was. (Adding the verified scores themselves made the best places
        stand out more than one frame should: the campus stream lost 5 points.)"""
        k = min(self.p.verify_top, len(s))
        if k < 2 or not self.loc.verifies(e):
            return s
        top = best_first(s, k)
        order, _ = self.loc.verify(e, top, s[top])
        out = s.copy()
        out[top[order]] = s[top]
        return out

    def _localize(self, emb: Embedding, stamp, sims) -> tuple[Fix, np.ndarray | None]:
        """The frame's single-image fix, and its similarity to every place (computed once for both)."""
        loc = self.loc
        t_sims = 0.0
        if sims is None and self._dense and loc.fused:  # the fix ranks every place by this too: compute it once
            t0 = time.perf_counter()
            sims = loc.similarities(emb)
            t_sims = (time.perf_counter() - t0) * 1e3
        # (no candidate verification of the fix: the filter's estimate replaces it; the evidence verifies its own few
        # best places, :meth:`_verified`)
        fix = loc.localize_embedding(emb, n_candidates=None if self._dense else self.p.candidates, fused=sims,
                                     verify=False)
        fix.timings_ms["index"] = fix.timings_ms.get("index", 0.0) + t_sims
        fix.stamp = stamp
        return fix, sims

    def update(self, image: np.ndarray, odom_pose=None, stamp: float | None = None,
               odom_delta: np.ndarray | None = None) -> Fix:
        """One frame: localize it, then the filter step (:meth:`update_embedding`).

        ``odom_pose`` is the odometry pose ``(x, y, yaw)`` in its odom frame; ``odom_delta`` a map-frame step."""
        return self.update_embedding(self.loc.embed(image), odom_pose, stamp, odom_delta)

    @staticmethod
    def _set_estimate(fix: Fix, centre: np.ndarray, cov2: np.ndarray, support: float) -> None:
        """The filter's position, its 2-D covariance (also in the 6x6 one) and support replace the fix's own."""
        fix.cov2 = cov2
        fix.xyz = np.array([centre[0], centre[1], fix.xyz[2]])
        fix.cov6 = fix.cov6.copy()
        fix.cov6[:2, :2] = cov2
        fix.support = support

    def _finish(self, fix: Fix, t0: float) -> Fix:
        """Geodetic position, the heading that rotates the next odometry step, the filter step's time."""
        self.loc.set_geodetic(fix)
        self.last_yaw = fix.yaw
        fix.timings_ms["sequence"] = (time.perf_counter() - t0) * 1e3
        return fix


class SequenceFilter(_MapFilter):
    """Wraps a :class:`Localizer`; ``update(image, odom_pose=None) -> Fix`` per frame.

    ``odom_pose`` is the robot's odometry pose ``(x, y, yaw)`` in its odom frame; the filter turns it into map-frame
    motion itself (:class:`OdometryTracker`, with the heading of its own last fix). A caller that already has a
    map-frame displacement passes ``odom_delta`` instead."""

    def __init__(self, localizer: Localizer, params: FilterParams | None = None,
                 tables_from: "_MapFilter | None" = None):
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
        e = self._evidence(emb, fix, p.hub_memory if odom_delta is None else p.hub_memory_odom, sims)
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
        return self._finish(fix, t0)

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


class PlaceFilter(_MapFilter):
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
                 tables_from: "_MapFilter | None" = None):
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
        e = p.beta_places * self._evidence(emb, fix, p.hub_memory if odom_delta is None else p.hub_memory_odom, sims)
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
