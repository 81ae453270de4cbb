"""Replay a rosbag2 through a :class:`Localizer` offline and score it against the bag's ground truth.

Used by ``visloc bag eval`` and ``visloc demo``: images in recorded order; with ``sequence`` the particle
filter runs across frames, driven by the bag's wheel odometry when it has an odometry topic.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..core.localizer import Localizer
from ..core.pose import CHI2_2D_95, mahalanobis2
from .bag import BagError, image_stream, nearest, pose_track, topics

log = logging.getLogger("visloc")


@dataclass
class Replay:
    t_ns: np.ndarray      # image stamps of the scored frames
    est: np.ndarray       # (N, 3) estimates (NaN-free; see ok)
    cov: np.ndarray       # (N, 2, 2)
    yaw: np.ndarray
    ok: np.ndarray        # published (not withheld)
    truth: np.ndarray     # (N, 3) ground truth at the image stamps
    truth_q: np.ndarray   # (N, 4)
    latency_ms: np.ndarray
    unreadable: int


def replay_bag(bag, loc: Localizer, sequence: bool = False, image_topic: str = "/camera/image_raw",
               gt_topic: str = "/ground_truth/pose", odom_topic: str | None = "/odom", progress=None,
               filter_kind: str | None = None, verified: bool = True) -> Replay:
    """Localize a bag's images offline: single images (the verified fix on maps with learned keypoints, unless
    ``verified`` is False) or, with ``sequence``, the sequence filter on the bag's odometry."""
    info = topics(bag)
    if image_topic not in info:
        raise BagError(f"bag has no image topic {image_topic} (topics: {', '.join(sorted(info))})")
    gt_t, gt_p, gt_q = pose_track(bag, gt_topic)
    seq = odo_t = None
    if sequence:
        from ..core.pose import yaw_from_quat
        from ..core.temporal import make_filter

        seq = make_filter(loc, kind=filter_kind)
        if odom_topic and odom_topic in info:
            odo_t, odo_p, q = pose_track(bag, odom_topic)
            odo_pose = np.column_stack([odo_p[:, :2], yaw_from_quat(q)])
    rows, bad = [], 0
    bar = progress(total=info[image_topic][1], desc="localizing images") if progress else None
    for t, rgb in image_stream(bag, image_topic):
        if bar:
            bar.update(1)
        if isinstance(rgb, Exception):
            bad += 1
            log.warning("frame %d skipped: %s", t, rgb)
            continue
        if seq is None:
            fix = loc.localize(rgb, stamp=t / 1e9)
            if verified and loc.verifies_keypoints:
                fix = loc.verify_fix(rgb, fix)
        else:
            k = None if odo_t is None else nearest(odo_t, t, 100_000_000)
            fix = seq.update(rgb, odom_pose=None if k is None else odo_pose[k], stamp=t / 1e9)
        j = nearest(gt_t, t, 50_000_000)
        if j is not None:
            rows.append((t, fix, j))
    if bar:
        bar.close()
    if not rows:
        raise BagError("no frame could be matched with a ground-truth pose within 50 ms")
    gi = np.array([r[2] for r in rows])
    return Replay(np.array([r[0] for r in rows]), np.array([r[1].xyz for r in rows]),
                  np.array([r[1].cov2 for r in rows]),
                  np.array([r[1].yaw if math.isfinite(r[1].yaw) else 0.0 for r in rows]),
                  np.array([r[1].ok for r in rows]), gt_p[gi], gt_q[gi],
                  np.array([r[1].latency_ms for r in rows]), bad)


def score(est, cov, ok, truth, latency_ms=None) -> dict:
    """The metrics of a scored trajectory (planar errors, in map units); latency percentiles when
    ``latency_ms`` is given. Error statistics are over published frames (None when there is none); the
    within-radius fractions are of all frames, since a withheld frame is not within anything."""
    e = np.asarray(est)[:, :2] - np.asarray(truth)[:, :2]
    err = np.linalg.norm(e, axis=1)
    ok = np.asarray(ok, bool)
    eo = err[ok]
    some = bool(ok.any())
    out = {"frames": int(len(err)), "published": float(ok.mean()),
           "median_error_m": float(np.median(eo)) if some else None,
           "mean_error_m": float(eo.mean()) if some else None,
           "p90_error_m": float(np.percentile(eo, 90)) if some else None,
           "ate_rmse_m": float(np.sqrt(np.mean(eo ** 2))) if some else None,
           "within_1m": float(np.sum(eo <= 1.0) / len(err)), "within_2m": float(np.sum(eo <= 2.0) / len(err)),
           "within_5m": float(np.sum(eo <= 5.0) / len(err)),
           "coverage_95": float(np.mean(mahalanobis2(e[ok], np.asarray(cov)[ok]) <= CHI2_2D_95)) if some else None}
    if latency_ms is not None and len(latency_ms):
        out["p50_latency_ms"] = float(np.percentile(latency_ms, 50))
        out["p99_latency_ms"] = float(np.percentile(latency_ms, 99))
    return out
