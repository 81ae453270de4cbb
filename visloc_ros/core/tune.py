"""Fit a map to a labelled run: the fusion weights, vote temperature, pose averaging and covariance of single
images, the sequence filter's evidence strength and covariance scale.

``tune_single`` replays the run's frames one by one for each pair of weights of a grid (how much the
appearance thumbnails and the CNN's regional descriptor count against the global descriptor, :mod:`.appearance`)
and each temperature of the consensus vote (how much the best place outweighs its runners-up), keeps the
setting that puts most frames within ``radius`` (ties: lower median error, then the smaller weights; the map's
own settings (the build's) unless beaten by more than 2 frames and 1 %) and refits the single-image covariance factor
``alpha`` on those frames; ``visloc tune`` stores it in ``map.yaml`` section ``single``, which every localizer
on the map reads. The sequence filter is then tuned with those weights:

How much one frame should move the belief depends on how alike the map's places look and how far the run's
conditions are from the map's (a summer map seen in winter says little per frame; a clean corridor says much).
``tune_sequence`` replays a labelled camera stream (the frames' latents, their true positions and optionally
odometry) through :class:`~visloc_ros.core.temporal.SequenceFilter` for each evidence strength of a grid
(several seeds each), keeps the one that puts most frames within ``radius`` of the truth (ties: lower median
error), then scales the reported covariance so that 95 % of those frames (plus one binomial standard error on
short runs: ``coverage_target``) fall inside their 95 % ellipse. ``visloc tune`` stores the result in the map
(``map.yaml``, section ``sequence``), where every filter built on the map (CLI, node, bag eval) reads it.
Report figures on frames the tuning did not see.

Before any labelled run exists, ``self_calibrate_sequence`` (run by the map build) gives the filter without
odometry a covariance scale from the map's own images: each replayed in map order as a stream with its own place
left out of the map. Those frames are in the map's own conditions (its light, its season), the kindest a run can
meet, so the fit can only widen the filter's ellipses, never narrow them: a filter whose ellipses miss even its own
images is over-confident; one that holds them proves nothing about a night run. (With its own place left out, a
frame's truth lies a spacing from the nearest place, which a run that passes exactly through the mapped places
does not suffer: there the fit errs wide.)
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import replace

import numpy as np

from .appearance import fuse
from .errors import DatasetError
from .localizer import DENSE_MAX, Embedding, Localizer
from .pose import CHI2_2D_95, REFINE_CHOICES, TEMPERATURES, clearly_better, fit_alpha, mahalanobis2
from .filter_params import FilterParams
from .temporal import make_filter

EVIDENCE_FACTORS = (0.5, 0.7, 1.0, 1.4, 2.0)  # x the default evidence strength; weaker recovers a kidnapped robot too late
COV_SCALE_RANGE = (0.05, 100.0)  # a fitted covariance scale is clipped to this (the coverage reached is reported)
APPEARANCE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # thumbnails vs the global descriptor; 0 = off
REGIONAL_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # the CNN's regional descriptor vs its global one; 0 = off
LOCAL_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0)  # the candidate verification by local CNN features; 0 = off


def coverage_target(frames: int) -> float:
    """The coverage a covariance is fitted to on ``frames`` labelled frames: 95 % plus one binomial standard error
    (97.9 % on 55 frames, 95.7 % on 900), at most 99 %, so that a fit on a short run is not narrower than the
    run can vouch for."""
    return float(min(0.99, 0.95 + np.sqrt(0.95 * 0.05 / max(frames, 1))))


def _single(loc: Localizer, frames: list[Embedding], weight: float, regional_weight: float, temperature: float,
            refine: float, local_weight: float, channels: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Single-image estimates (N, 2) and covariances at alpha 1 (N, 2, 2) with the given appearance and regional
    weights, consensus temperature, pose averaging and verification weight. ``channels``: the run's unfused
    similarities to every place (``Localizer.channel_similarities`` of all frames), so that each setting only fuses
    them."""
    keep = loc.appearance_weight, loc.regional_weight, loc.local_weight, loc.pose_model
    loc.appearance_weight, loc.regional_weight, loc.local_weight = weight, regional_weight, local_weight
    loc.pose_model = replace(keep[3], alpha=1.0, temperature=temperature, refine_spacings=refine)
    try:
        if channels is not None and loc.fused:
            s, app, reg = channels
            fused = fuse(s, [(app, weight), (reg, regional_weight)])
            fixes = [loc.localize_embedding(replace(e, timings_ms={}), fused=f) for e, f in zip(frames, fused)]
        else:
            fixes = [loc.localize_embedding(replace(e, timings_ms={})) for e in frames]
    finally:
        loc.appearance_weight, loc.regional_weight, loc.local_weight, loc.pose_model = keep
    return np.array([f.xyz[:2] for f in fixes]), np.array([f.cov2 for f in fixes])


def tune_single(loc: Localizer, frames: list[Embedding], truth_xy: np.ndarray, radius: float,
                weights=APPEARANCE_WEIGHTS, regional_weights=REGIONAL_WEIGHTS, temperatures=TEMPERATURES,
                local_weights=LOCAL_WEIGHTS, progress=None) -> dict:
    """The appearance and regional weights, consensus temperature, pose averaging, verification weight and
    single-image covariance factor for this map; the record ``visloc tune`` stores under ``single``. A map without
    thumbnails (regional descriptors, local features) gets appearance (regional, local) weight 0. The pose averaging
    (``REFINE_CHOICES``), then the verification weight are chosen last, at the best weights and temperature, by
    the same rule against the build's choice."""
    if len(frames) < 10:
        raise DatasetError(f"tuning needs a labelled run of at least 10 frames (got {len(frames)})")
    frames = [replace(e, chamfer={}) for e in frames]  # each frame's verification scores computed once per place
    if loc.map.appearance is None or any(e.thumb is None for e in frames):
        weights = (0.0,)
    built_r = 0.0  # the build's regional weight (its calibration ranked with it)
    if loc.map.regional is None or any(e.regional is None for e in frames):
        regional_weights = (0.0,)
    else:
        built_r = float((loc.map.meta.get("regional") or {}).get("weight", 0.0))
        regional_weights = tuple(sorted(set(regional_weights) | {built_r}))
    built_l = 0.0  # the build's verification weight
    if loc.map.local is None or any(e.local is None for e in frames):
        local_weights = (0.0,)
    else:
        built_l = float((loc.map.meta.get("local") or {}).get("weight", 0.0))
        local_weights = tuple(sorted(set(local_weights) | {built_l}))
    default_t, built_refine = loc.pose_model.temperature, loc.pose_model.refine_spacings
    temperatures = tuple(sorted(set(temperatures) | {default_t}))
    grid = [(w, r, t, built_refine, built_l) for w in weights for r in regional_weights for t in temperatures]
    channels = None
    if len(grid) > 1 and len(loc.map) <= DENSE_MAX and len(frames) * len(loc.map) <= 20_000_000:
        # every place's similarities once (at most 80 MB per signal), fused per setting
        channels = loc.channel_similarities(Embedding(
            np.stack([e.latent for e in frames]),
            np.stack([e.thumb for e in frames]) if max(weights) > 0 else None,
            np.stack([e.regional for e in frames]) if max(regional_weights) > 0 else None))
    refines = [f for f in REFINE_CHOICES if f != built_refine]
    locals_ = [lw for lw in local_weights if lw != built_l]
    bar = progress(total=len(grid) + len(refines) + len(locals_), desc="tuning single images") if progress else None
    runs, err, recall = {}, {}, {}

    def run(k):
        runs[k] = _single(loc, frames, *k, channels=channels)
        err[k] = np.linalg.norm(runs[k][0] - truth_xy, axis=1)
        recall[k] = float(np.mean(err[k] <= radius))
        if bar:
            bar.update(1)

    def pick(keys, own):
        # most frames within the radius; ties: lower median error, the smaller weights, the temperature nearest
        # the map's own. ``own`` (the build's setting) is kept unless the best beats it by more than 2 frames and
        # 1 % of the frames: a few frames are noise, not a fit.
        best = max(keys, key=lambda k: (round(recall[k], 4), -float(np.median(err[k])), -(k[0] + k[1]),
                                        -abs(np.log(k[2] / default_t)), -abs(k[3] - built_refine),
                                        -abs(k[4] - built_l)))
        return best if clearly_better(recall[best], recall[own], len(frames)) else own

    try:
        for k in grid:
            run(k)
        best = pick(grid, (0.0, built_r, default_t, built_refine, built_l))  # no thumbnails, the build's weights
        for f in refines:  # then the pose averaging, at those settings
            run(best[:3] + (f, built_l))
        best = pick([best[:3] + (f, built_l) for f in REFINE_CHOICES], best)
        for lw in locals_:  # then the verification weight
            run(best[:4] + (lw,))
        best = pick([best[:4] + (lw,) for lw in local_weights], best)
    finally:
        if bar:
            bar.close()
    d = runs[best][0] - truth_xy
    cov = runs[best][1]
    target = coverage_target(len(frames))
    alpha = float(fit_alpha(d, cov, target))
    before = float(loc.pose_model.alpha)
    m2 = mahalanobis2(d, cov)
    return {
        "appearance_weight": best[0],
        "regional_weight": best[1],
        "temperature": best[2],
        "refine_spacings": best[3],
        "local_weight": best[4],
        "alpha": round(alpha, 6),
        "coverage_target": round(target, 4),
        "radius": radius,
        "frames": len(frames),
        "within_radius": round(recall[best], 4),
        "median_error": round(float(np.median(err[best])), 4),
        "coverage_95_before": round(float(np.mean(m2 <= CHI2_2D_95 * before ** 2)), 4),
        "coverage_95": round(float(np.mean(m2 <= CHI2_2D_95 * alpha ** 2)), 4),
        "within_radius_by_weight": {f"{w:g}": round(max(recall[k] for k in grid if k[0] == w), 4) for w in weights},
        "within_radius_by_regional_weight": {f"{r:g}": round(max(recall[k] for k in grid if k[1] == r), 4)
                                             for r in regional_weights},
        "within_radius_by_temperature": {f"{t:g}": round(recall[best[:2] + (t, built_refine, built_l)], 4)
                                         for t in temperatures},
        "within_radius_by_refine": {f"{f:g}": round(recall[best[:3] + (f, built_l)], 4) for f in REFINE_CHOICES},
        "within_radius_by_local_weight": {f"{lw:g}": round(recall[best[:4] + (lw,)], 4) for lw in local_weights},
        "tuned": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def replay(loc: Localizer, frames: list[Embedding], params: FilterParams, odom: np.ndarray | None = None,
           own_left_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The filter over a stream of frames (and odometry poses (N, 3) x, y, yaw, or None): estimates (N, 2)
    and covariances (N, 2, 2). ``own_left_out``: frame i is the map's place i, ranked against every place but its
    own (the self-calibration; maps up to ``DENSE_MAX`` places)."""
    f = make_filter(loc, params)
    est, cov = np.zeros((len(frames), 2)), np.zeros((len(frames), 2, 2))
    for i, e in enumerate(frames):
        sims = None
        if own_left_out:
            sims = loc.similarities(e)
            sims[i] = sims.min()  # the frame's own place is not in the map
        fix = f.update_embedding(replace(e, timings_ms={}), odom_pose=None if odom is None else odom[i], sims=sims)
        est[i], cov[i] = fix.xyz[:2], fix.cov2
    return est, cov


def tune_sequence(loc: Localizer, frames: list[Embedding], truth_xy: np.ndarray, radius: float,
                  odom: np.ndarray | None = None, seeds: int = 2, factors=EVIDENCE_FACTORS, progress=None,
                  kinds: tuple[str, ...] | None = None) -> dict:
    """The filter kind, evidence strength and covariance scale for this map in this mode (with odometry when
    ``odom`` is given); returns the record ``visloc tune`` stores under ``sequence.with_odometry`` /
    ``without_odometry``. ``kinds``: the filters tried, the default first (without odometry: places, then
    particles; with it: the particles); another is chosen only when it is clearly better (``clearly_better``: by
    more than 2 frames and 1 %) and its wins over the default are more than chance (:func:`wins_beyond_chance`),
    and every kind's own fit is kept under ``by_filter`` so that either can be run on the map, calibrated."""
    if len(frames) < 10:
        raise DatasetError(f"tuning needs a labelled stream of at least 10 frames (got {len(frames)})")
    kinds = kinds or (("particles",) if odom is not None else ("places", "particles"))
    base = FilterParams()  # the defaults (covariance scale 1), not the map's stored fit
    runs_of = {k: (1 if k == "places" else seeds) for k in kinds}  # the place filter is deterministic
    bar = progress(total=len(factors) * sum(runs_of.values()), desc="tuning the sequence filter") if progress else None
    fits = {}
    try:
        for kind in kinds:
            key = "beta_places" if kind == "places" else "beta_odom" if odom is not None else "beta"
            runs = {}
            for fct in factors:
                b = getattr(base, key) * fct
                runs[b] = []
                for s in range(runs_of[kind]):
                    est, cov = replay(loc, frames, replace(base, **{key: b, "seed": s, "kind": kind,
                                                                     "kind_odom": kind}), odom)
                    runs[b].append((est - truth_xy, cov))
                    if bar:
                        bar.update(1)
            fits[kind] = _fit_evidence_and_scale(runs, radius, len(frames), runs_of[kind], getattr(base, key))
    finally:
        if bar:
            bar.close()
    hits = {k: fits[k].pop("hits") for k in kinds}
    chosen = kinds[0]
    for kind in kinds[1:]:
        if (clearly_better(fits[kind]["within_radius"], fits[chosen]["within_radius"], len(frames))
                and wins_beyond_chance(hits[kind], hits[chosen])):
            chosen = kind
    return {"filter": chosen, **fits[chosen], "radius": radius, "frames": len(frames),
            "by_filter": {k: {f: v[f] for f in ("evidence", "cov_scale", "within_radius", "median_error",
                                                  "coverage_95")} for k, v in fits.items()},
            "tuned": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def wins_beyond_chance(hits: np.ndarray, default_hits: np.ndarray, p_max: float = 0.05) -> bool:
    """Whether a filter beats the default on the frames where the two disagree by more than chance: a one-sided sign
    test (the frames it gets right more often than the default, against the reverse) at ``p_max``. Another filter is
    a change of model, not of a parameter: on a short run a few frames decide it (a 56-frame corridor half: the
    particles 3 frames ahead, all of them won, then 69.1 % of the other half against the place filter's 96.4 %),
    so it must win more than a coin would."""
    wins = int(np.sum(hits > default_hits))
    n = wins + int(np.sum(hits < default_hits))
    return n > 0 and sum(math.comb(n, k) for k in range(wins, n + 1)) / 2.0 ** n < p_max


def _fit_evidence_and_scale(runs: dict, radius: float, frames: int, seeds: int, default: float) -> dict:
    """From replays per evidence strength (``{beta: [(errors, covariances) per seed]}``): the strength that puts
    most frames within ``radius`` (ties: lower mean median error, then the one nearest ``default``: a run that
    cannot tell strengths apart keeps the default) and the covariance scale that makes its 95 % ellipses hold
    ``coverage_target`` of the frames."""
    dist = {b: [np.linalg.norm(d, axis=1) for d, _ in r] for b, r in runs.items()}
    recall = {b: float(np.mean([np.mean(e <= radius) for e in es])) for b, es in dist.items()}
    median = {b: float(np.mean([np.median(e) for e in es])) for b, es in dist.items()}
    best = max(runs, key=lambda b: (round(recall[b], 4), -round(median[b], 4), -abs(np.log(b / default))))
    err, cov = (np.concatenate(a) for a in zip(*runs[best]))
    target = coverage_target(frames)
    scale = float(np.clip(fit_alpha(err, cov, target) ** 2, *COV_SCALE_RANGE))
    m2 = mahalanobis2(err, cov)
    return {
        "hits": np.mean([e <= radius for e in dist[best]], axis=0),  # each frame's share of seeds within the radius
        "evidence": round(best, 4),
        "cov_scale": round(scale, 4),
        "coverage_target": round(target, 4),
        "seeds": seeds,
        "within_radius": round(recall[best], 4),
        "median_error": round(median[best], 4),
        "coverage_95_before": round(float(np.mean(m2 <= CHI2_2D_95)), 4),
        "coverage_95": round(float(np.mean(m2 <= CHI2_2D_95 * scale)), 4),
        "within_radius_by_evidence": {f"{b:g}": round(v, 4) for b, v in recall.items()},
    }


SELF_CALIBRATION_FRAMES = 2000  # at most this many of the map's places (the first ones) are replayed


def self_calibrate_sequence(loc: Localizer, seeds: int = 2, max_frames: int = SELF_CALIBRATION_FRAMES,
                            progress=None) -> dict:
    """The covariance scale of the filter without odometry, from the map's own images (see the module's text):
    the first ``max_frames`` places replayed in map order, each frame ranked against every place but its own, for
    ``seeds`` filter seeds; the scale that puts 95 % of them (plus ``coverage_target``'s margin) inside their 95 %
    ellipse, but never below 1. Returns the record stored under ``sequence.without_odometry`` until ``visloc tune``
    replaces it with a fit on a labelled run."""
    m = loc.map
    n = min(len(m), max_frames)
    record = {"method": "self: the map's own images replayed in map order, each with its own place left out",
              "frames": n, "seeds": seeds}
    if len(m) > DENSE_MAX or n < 10:
        return dict(record, cov_scale=1.0, skipped=f"needs 10 to {DENSE_MAX} places (the map has {len(m)})")
    lat = np.asarray(m.latents[:n], np.float32)
    app = None if m.appearance is None else np.asarray(m.appearance[:n], np.float32)
    reg = None if m.regional is None else np.asarray(m.regional[:n], np.float32)
    frames = [Embedding(lat[i], None if app is None else app[i], None if reg is None else reg[i],
                        None if m.local is None else np.asarray(m.local[i], np.float32)) for i in range(n)]
    truth = m.places.xyz[:n, :2]
    bar = progress(total=seeds + 1, desc="calibrating the sequence filters") if progress else None
    runs = []
    try:
        for seed in range(seeds):
            est, cov = replay(loc, frames, FilterParams.for_map(m.meta, seed=seed, cov_scale=1.0, kind="particles"),
                              own_left_out=True)
            runs.append((est - truth, cov))
            if bar:
                bar.update(1)
        # the place filter is deterministic: one replay
        est, cov = replay(loc, frames, FilterParams.for_map(m.meta, kind="places", kind_odom="places",
                                                           cov_scale_places=1.0), own_left_out=True)
        places_err, places_cov = est - truth, cov
        if bar:
            bar.update(1)
    finally:
        if bar:
            bar.close()
    err, cov = (np.concatenate(a) for a in zip(*runs))
    target = coverage_target(n)

    def never_narrower(err, cov):  # (the scale stored, the scale fitted): own images only ever widen
        fitted = float(fit_alpha(err, cov, target) ** 2)
        return float(np.clip(max(fitted, 1.0), *COV_SCALE_RANGE)), fitted

    scale, fitted = never_narrower(err, cov)
    scale_places, fitted_places = never_narrower(places_err, places_cov)
    m2 = mahalanobis2(err, cov)
    return dict(record, cov_scale=round(scale, 4), fitted_scale=round(fitted, 4), coverage_target=round(target, 4),
                median_error=round(float(np.median(np.linalg.norm(err, axis=1))), 4),
                coverage_95_before=round(float(np.mean(m2 <= CHI2_2D_95)), 4),
                coverage_95=round(float(np.mean(m2 <= CHI2_2D_95 * scale)), 4),
                cov_scale_places=round(scale_places, 4), fitted_scale_places=round(fitted_places, 4),
                calibrated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
