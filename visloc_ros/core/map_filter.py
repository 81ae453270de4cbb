"""What both sequence filters share: the nearest map place of any position (:class:`PlaceLookup`), odometry turned
into map-frame steps (:class:`OdometryTracker`), and the per-place evidence of a frame with hub suppression
(:class:`MapFilter`, the base of :class:`.particle_filter.SequenceFilter` and :class:`.place_filter.PlaceFilter`)."""
from __future__ import annotations

import time
from collections import deque

import cv2
import numpy as np

from .appearance import zscore
from .filter_params import FilterParams
from .localizer import Embedding, Fix, Localizer, best_first


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


WAITING_BYTES = 64 << 20  # the evidence of frames waiting to enter the hub running means, at most
HEADING_AGREE = 0.5  # rad: the single-image fix's heading is kept when within this of the map's at the estimate


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

    def heading(self) -> float | None:
        """The robot's map-frame heading from its last odometry pose and the tracked rotation (None before both)."""
        if self.prev is None or not self.offsets:
            return None
        return float(np.angle(np.exp(1j * (self.prev[1] + self.rotation()))))

    def turn(self, angle: float) -> None:
        """The robot turned out to be elsewhere, facing ``angle`` more than thought: the rotation follows."""
        self.offsets = deque((o + angle for o in self.offsets), maxlen=self.offsets.maxlen)

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


class MapFilter:
    """What both filters share: the map, the per-place evidence of a frame with hub suppression, the single-image
    fix computed alongside, odometry turned into map-frame steps."""

    def __init__(self, localizer: Localizer, params: FilterParams | None = None,
                 tables_from: "MapFilter | None" = None):
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
        self.waiting: deque = deque()  # frames' evidence not yet in those running means
        self.odometry = OdometryTracker()
        self.last_yaw = float("nan")  # heading of the last fix: rotates odometry into the map frame

    def _evidence(self, e: Embedding, fix: Fix, odom: bool, sims: np.ndarray | None = None,
                  delayed: bool = True) -> np.ndarray:
        """Per-place evidence of this frame: the similarity to every place (latents, fused with the appearance
        thumbnails and regional descriptors at the map's weights; the index's scored places on maps above
        ``dense_max``, the rest at their minimum) as a z-score over the places (what one frame says,
        whatever the image's overall contrast), minus each place's own running mean of it (hub suppression:
        places that answer every frame count less; the means move at ``hub_memory``, ``hub_memory_odom`` with
        odometry). A frame enters them ``hub_delay`` (``hub_delay_odom``) frames after its own (at most
        ``WAITING_BYTES`` of waiting frames): a moving robot's own passage raises the means of the
        places it has just passed and not yet of those ahead, and subtracting them at once puts the evidence's peak
        ahead of the robot (the generated night tunnel: 0.26 m; the filter's median error 0.85 m at once, 0.68 m
        delayed by 10 frames; docs/demo.md). ``delayed`` False: at once. ``sims``: the frame's similarity to every
        place when the caller has it already."""
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
        p = self.p
        rate, delay = (p.hub_memory_odom, p.hub_delay_odom) if odom else (p.hub_memory, p.hub_delay)
        delay = delay if delayed else 0
        self.waiting.append(zs)
        while len(self.waiting) > min(delay, self._rows(WAITING_BYTES)):
            self.bg += rate * (self.waiting.popleft() - self.bg)
        return e

    def _rows(self, budget: int) -> int:
        """How many frames of per-place evidence (float32, one value a place) fit in ``budget`` bytes."""
        return budget // (4 * max(1, len(self.xy)))

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

    def _map_heading(self, centre: np.ndarray, directed: bool = True) -> float:
        """The map's heading where the filter puts the robot: the circular mean of the orientations of the places
        within two spacings of ``centre`` (the nearest one's alone when none is that close); NaN on maps without
        orientations. Where odometry gives the robot's heading (its odom heading + the tracked rotation), the axis
        is taken in the direction nearer to it (a corridor driven against the mapping run's direction)."""
        yaws = self.loc._yaws
        if yaws is None:
            return float("nan")
        d = np.linalg.norm(self.xy - centre, axis=1)
        near = d <= 2.0 * self.spacing
        if not near.any():
            near = d == d.min()
        w = np.exp(-0.5 * (d[near] / self.spacing) ** 2)
        yaw = float(np.angle(np.sum(w * np.exp(1j * yaws[near]))))
        pred = self.odometry.heading() if directed else None
        if pred is not None and abs(np.angle(np.exp(1j * (yaw - pred)))) > np.pi / 2:
            yaw = float(np.angle(np.exp(1j * (yaw + np.pi))))
        return yaw

    def _finish(self, fix: Fix, t0: float) -> Fix:
        """Geodetic position, the heading (the map's at the filter's estimate, not the single-image fix's, whose
        candidates may lie in a look-alike corridor facing elsewhere: that heading rotated the odometry and sent the
        estimate backwards through a building), the filter step's time."""
        self.loc.set_geodetic(fix)
        yaw = self._map_heading(fix.xyz[:2])
        # the fix's own heading where it agrees with the map's there (on a tight curve the estimate may lag a
        # place behind, and the fix's candidates then know the heading better); the map's where it does not
        agrees = np.isfinite(fix.yaw) and abs(np.angle(np.exp(1j * (fix.yaw - yaw)))) <= HEADING_AGREE
        if np.isfinite(yaw) and not agrees:
            fix.yaw = yaw
        self.last_yaw = fix.yaw
        fix.timings_ms["sequence"] = (time.perf_counter() - t0) * 1e3
        return fix
