"""Fit the sequence filter to a map on a labelled run: its evidence strength and its covariance scale.

How much one frame should move the belief depends on how alike the map's places look and how far the
run's conditions are from the map's (a summer map seen in winter says little per frame; a clean corridor
says much). ``tune_sequence`` replays a labelled camera stream (the frames' latents, their true positions
and optionally odometry) through :class:`~visloc_ros.core.temporal.SequenceFilter` for each evidence strength
of a grid (several seeds each), keeps the one that puts most frames within ``radius`` of the truth (ties:
lower median error), then scales the reported covariance so that 95 % of those frames fall inside their
95 % ellipse. ``visloc tune`` stores the result in the map (``map.yaml``, section ``sequence``), where every
filter built on the map (CLI, node, bag eval) reads it. Report figures on frames the tuning did not see.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import replace

import numpy as np

from .errors import DatasetError
from .localizer import Localizer
from .pose import CHI2_2D_95, fit_alpha, mahalanobis2
from .temporal import FilterParams, SequenceFilter

EVIDENCE_FACTORS = (0.5, 0.7, 1.0, 1.4, 2.0)  # x the default evidence strength; weaker recovers a kidnapped robot too late
COV_SCALE_RANGE = (0.05, 100.0)  # a fitted covariance scale is clipped to this (the coverage reached is reported)


def replay(loc: Localizer, latents: np.ndarray, params: FilterParams, odom: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The filter over a stream of latents (and odometry poses (N, 3) x, y, yaw, or None): estimates (N, 2)
    and covariances (N, 2, 2)."""
    f = SequenceFilter(loc, params)
    est, cov = np.zeros((len(latents), 2)), np.zeros((len(latents), 2, 2))
    for i, z in enumerate(latents):
        fix = f.update_latent(np.asarray(z, np.float32), {}, odom_pose=None if odom is None else odom[i])
        est[i], cov[i] = fix.xyz[:2], fix.cov2
    return est, cov


def tune_sequence(loc: Localizer, latents: np.ndarray, truth_xy: np.ndarray, radius: float,
                  odom: np.ndarray | None = None, seeds: int = 2, factors=EVIDENCE_FACTORS, progress=None) -> dict:
    """The evidence strength and covariance scale for this map in this mode (with odometry when ``odom`` is
    given); returns the record ``visloc tune`` stores under ``sequence.with_odometry`` / ``without_odometry``."""
    if len(latents) < 10:
        raise DatasetError(f"tuning needs a labelled stream of at least 10 frames (got {len(latents)})")
    key = "beta_odom" if odom is not None else "beta"
    base = FilterParams()  # the defaults (covariance scale 1), not the map's stored fit
    bar = progress(total=len(factors) * seeds, desc="tuning the sequence filter") if progress else None
    runs = {}
    try:
        for fct in factors:
            b = getattr(base, key) * fct
            runs[b] = []
            for s in range(seeds):
                est, cov = replay(loc, latents, replace(base, **{key: b, "seed": s}), odom)
                runs[b].append((est - truth_xy, cov))
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()
    dist = {b: [np.linalg.norm(d, axis=1) for d, _ in r] for b, r in runs.items()}
    recall = {b: float(np.mean([np.mean(e <= radius) for e in es])) for b, es in dist.items()}
    median = {b: float(np.mean([np.median(e) for e in es])) for b, es in dist.items()}
    best = max(runs, key=lambda b: (round(recall[b], 4), -median[b]))
    err, cov = (np.concatenate(a) for a in zip(*runs[best]))
    scale = float(np.clip(fit_alpha(err, cov) ** 2, *COV_SCALE_RANGE))
    m2 = mahalanobis2(err, cov)
    return {
        "evidence": round(best, 4),
        "cov_scale": round(scale, 4),
        "radius": radius,
        "frames": int(len(latents)),
        "seeds": seeds,
        "within_radius": round(recall[best], 4),
        "median_error": round(median[best], 4),
        "coverage_95_before": round(float(np.mean(m2 <= CHI2_2D_95)), 4),
        "coverage_95": round(float(np.mean(m2 <= CHI2_2D_95 * scale)), 4),
        "within_radius_by_evidence": {f"{b:g}": round(v, 4) for b, v in recall.items()},
        "tuned": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
