"""Pose from the retrieved candidates: weighted consensus, outlier rejection, calibrated covariance.

Quaternions are ``x, y, z, w`` (ROS order) everywhere in this package; conversions live here only.

Model: candidate ``i`` with similarity ``s_i`` gets weight ``exp((s_i - s_max) / T)``. The consensus
is the candidate with the most weight within ``radius`` of it; the position is the weighted mean of
the candidates within ``radius`` (inliers). On maps built with ``crowding`` (every map built since the 17th
session), each candidate's vote is its weight divided by the number of map places within ``radius`` of it: a
stretch the map photographed densely would otherwise outvote a sparse one by numbers alone (a generic-looking
frame draws many mediocre candidates from the crowd). The 2x2 covariance is
``alpha^2 * (S + spacing^2 I)``, where ``S`` is the weighted scatter of *all* candidates around the
estimate (disagreeing candidates widen it) and ``alpha`` is fitted at map build on held-out images so
that the 95 % ellipse holds the truth 95 % of the time (:func:`fit_alpha`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHI2_2D_95 = 5.991464547107979  # chi-square, 2 degrees of freedom, 95 %
UNOBSERVED_VAR = 1.0e6          # variance marking an unobserved axis in the 6x6 covariance (m^2 / rad^2)


def yaw_from_quat(q: np.ndarray) -> np.ndarray:
    """Yaw (rotation about z, radians) of quaternion(s) ``x, y, z, w``."""
    q = np.asarray(q, dtype=float)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quat_from_yaw(yaw) -> np.ndarray:
    """Quaternion(s) ``x, y, z, w`` of a pure rotation about z."""
    yaw = np.asarray(yaw, dtype=float)
    return np.stack([np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2), np.cos(yaw / 2)], axis=-1)


# pose averaging: the whole consensus mode (0), or only the places within 0.5 (the best place alone), 1 or 2 spacings
# of its best place; chosen per map at build (held-out map images) and by `visloc tune` (a labelled run)
REFINE_CHOICES = (0.0, 0.5, 1.0, 2.0)
# the plain pose averaging: the consensus's best place alone (with any place photographed within half a spacing of it)
PLAIN_REFINE = 0.5
# temperature of the consensus vote: low, the best place decides; high, the runners-up's agreement does. Chosen per
# map at build (held-out map images) and by `visloc tune` (a labelled run)
TEMPERATURES = (0.01, 0.02, 0.05, 0.1)


def clearly_better(recall: float, baseline: float, n: int) -> bool:
    """Whether a setting that gets ``recall`` of ``n`` trials right beats one that gets ``baseline`` by more than 2
    trials and 1 % of them: a few trials are noise, not a fit (the rule of the build's and `visloc tune`'s
    choices against their defaults)."""
    return recall - baseline > max(2.0 / max(n, 1), 0.01) + 1e-9

@dataclass(frozen=True)
class PoseModel:
    """Parameters of the pose/covariance model; ``alpha`` comes from calibration, the rest from the map."""

    radius: float           # consensus radius, metres (map units)
    spacing: float          # typical distance between neighbouring map places
    alpha: float = 1.0      # calibrated covariance scale
    temperature: float = 0.05
    yaw_floor: float = 0.35  # rad: a place's orientation says little about the query's exact heading
    refine_spacings: float = 0.0  # >0: average only inliers this many spacings from the mode's best candidate
    crowding: bool = False  # votes divided by each candidate's number of map places within radius (:class:`Crowding`)


@dataclass
class PoseEstimate:
    xyz: np.ndarray         # (3,)
    yaw: float              # radians, nan when the map has no orientation
    cov2: np.ndarray        # (2, 2) x, y
    cov6: np.ndarray        # (6, 6) x, y, z, roll, pitch, yaw (ROS PoseWithCovariance order)
    inliers: np.ndarray     # indices into the candidate list
    support: float          # weight fraction of the inliers, 0..1


def weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    return np.exp((s - s.max()) / temperature)


def raw_covariance(xy: np.ndarray, w: np.ndarray, centre: np.ndarray, spacing: float) -> np.ndarray:
    """Un-calibrated 2x2: weighted scatter of every candidate around ``centre`` plus a spacing floor."""
    d = xy - centre[None]
    s = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / w.sum()
    return s + (spacing ** 2) * np.eye(2)


class Crowding:
    """How many of a map's places (N, 2) lie within a radius of given places (themselves included): the pose vote's
    divisor. The places are sorted once along the map's longer axis; each count then measures only the slab of
    places within the radius along that axis (a few hundred on a street-scale map of a million places), not all N."""

    def __init__(self, xy: np.ndarray):
        xy = np.asarray(xy, np.float64)[:, :2]
        self.axis = int(np.ptp(xy[:, 1]) > np.ptp(xy[:, 0])) if len(xy) else 0
        order = np.argsort(xy[:, self.axis], kind="stable")
        self.xy = xy[order]
        self.keys = self.xy[:, self.axis]
        self.rank = np.empty(len(xy), np.int64)  # each place's row in the sorted table
        self.rank[order] = np.arange(len(xy))

    def __call__(self, ids: np.ndarray, radius: float) -> np.ndarray:
        """The counts (len(ids),), float32."""
        rows = self.rank[np.asarray(ids, dtype=np.int64)]
        key = self.keys[rows]
        lo = np.searchsorted(self.keys, key - radius, side="left")  # each one's slab along the sorted axis
        hi = np.searchsorted(self.keys, key + radius, side="right")
        out = np.empty(len(rows), np.float32)
        r2 = float(radius) ** 2
        for k, (row, a, b) in enumerate(zip(rows.tolist(), lo.tolist(), hi.tolist())):
            d = self.xy[a:b] - self.xy[row]
            out[k] = np.count_nonzero(np.einsum("ni,ni->n", d, d) <= r2)
        return out


def estimate(positions: np.ndarray, scores: np.ndarray, model: PoseModel,
             yaws: np.ndarray | None = None, crowd: np.ndarray | None = None) -> PoseEstimate:
    """Pose from K candidates (positions (K, 3), similarity scores (K,), optional yaws (K,)). ``crowd``: each
    candidate's number of map places within ``model.radius`` (:class:`Crowding`), read when ``model.crowding``."""
    p = np.asarray(positions, dtype=float)
    w = weights(scores, model.temperature)
    xy = p[:, :2]
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    near = dist <= model.radius
    if model.crowding:
        if crowd is None:
            raise ValueError("a pose model with crowding needs each candidate's crowd (pose.Crowding)")
        mode = int(np.argmax(near @ (w / np.maximum(np.asarray(crowd, float), 1.0))))
    else:
        mode = int(np.argmax(near @ w))
    inl = np.flatnonzero(near[mode])
    if model.refine_spacings > 0:
        best = inl[np.argmax(w[inl])]
        inl = inl[dist[best, inl] <= model.refine_spacings * model.spacing]
    wi = w[inl]
    xyz = (wi[:, None] * p[inl]).sum(0) / wi.sum()
    cov2 = model.alpha ** 2 * raw_covariance(xy, w, xyz[:2], model.spacing)

    cov6 = np.diag([0.0, 0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR])
    cov6[:2, :2] = cov2
    dz = p[inl, 2] - xyz[2]
    cov6[2, 2] = model.alpha ** 2 * (float((wi * dz * dz).sum() / wi.sum()) + (0.5 * model.spacing) ** 2)
    yaw = float("nan")
    if yaws is not None:
        c, s = (wi * np.cos(yaws[inl])).sum(), (wi * np.sin(yaws[inl])).sum()
        yaw = float(np.arctan2(s, c))
        r = min(np.hypot(c, s) / wi.sum(), 1.0)  # mean resultant length -> circular variance
        cov6[5, 5] = -2.0 * np.log(max(r, 1e-6)) + model.yaw_floor ** 2
    return PoseEstimate(xyz, yaw, cov2, cov6, inl, float(wi.sum() / w.sum()))


def mahalanobis2(err_xy: np.ndarray, cov2: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of (N, 2) errors under (N, 2, 2) covariances."""
    return np.einsum("ni,nij,nj->n", err_xy, np.linalg.inv(cov2), err_xy)


def fit_alpha(err_xy: np.ndarray, raw_cov2: np.ndarray, coverage: float = 0.95) -> float:
    """Scale such that ``coverage`` of the errors fall inside the 95 % ellipse of ``alpha^2 * raw_cov2``."""
    d2 = mahalanobis2(np.asarray(err_xy, float), np.asarray(raw_cov2, float))
    return float(np.sqrt(max(np.quantile(d2, coverage) / CHI2_2D_95, 1e-4)))
