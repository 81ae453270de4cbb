import shutil
from dataclasses import replace

import numpy as np
import pytest

from visloc_ros.core.build import DEFAULT_LOCAL_WEIGHT, DEFAULT_REGIONAL_WEIGHT
from visloc_ros.core.config import LocalizerConfig
from visloc_ros.core.localizer import Localizer
from visloc_ros.core.map_db import load_map, update_meta
from visloc_ros.core.pose import REFINE_CHOICES
from visloc_ros.core.synthetic import draw_scene, view
from visloc_ros.core.filter_params import FilterParams
from visloc_ros.core.particle_filter import SequenceFilter
from visloc_ros.core.tune import (APPEARANCE_WEIGHTS, EVIDENCE_FACTORS, LOCAL_WEIGHTS, REGIONAL_WEIGHTS, TEMPERATURES,
                                  coverage_target, replay, self_calibrate_sequence, tune_sequence, tune_single)


def _stream(xy_map, order, seed=0):
    """Latents and true positions of a camera driven past the map's places in ``order`` (every 4th frame dark)."""
    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    seed_of = {name: int(name.split("/")[1][:5]) for name in places.images}
    rng = np.random.default_rng(seed)
    frames = [loc.embed(view(draw_scene(100003 + seed_of[places.images[i]]), rng, night=k % 4 == 3))
              for k, i in enumerate(order)]
    return loc, frames, places.xyz[order, :2]


def test_tune_fits_the_evidence_and_a_covariance_that_holds(xy_map, tmp_path):
    m = tmp_path / "map"
    shutil.copytree(xy_map, m)
    loc, z, truth = _stream(m, list(range(30)) + list(range(10)))
    spacing = loc.pose_model.spacing
    fit = tune_sequence(loc, z, truth, radius=2 * spacing, seeds=1, kinds=("particles",))
    default = FilterParams().beta
    assert fit["evidence"] in [round(default * f, 4) for f in EVIDENCE_FACTORS]
    assert set(fit["within_radius_by_evidence"]) == {f"{default * f:g}" for f in EVIDENCE_FACTORS}
    assert fit["within_radius"] >= 0.8 and fit["frames"] == 40
    assert 0.9 <= fit["coverage_95"] <= 1.0

    # stored in the map, every filter built on it uses it, and the reported covariance is scaled by it
    update_meta(m, "sequence", {"without_odometry": fit})
    loc2 = Localizer(m)
    filt = SequenceFilter(loc2)
    assert filt.p.beta == fit["evidence"] and filt.p.cov_scale == fit["cov_scale"]
    assert filt.p.beta_odom == FilterParams().beta_odom  # the odometry mode was not tuned
    est1, cov1 = replay(loc2, z, FilterParams(beta=fit["evidence"], kind="particles"))
    est2, cov2 = replay(loc2, z, FilterParams(beta=fit["evidence"], cov_scale=fit["cov_scale"], kind="particles"))
    np.testing.assert_allclose(est1, est2)
    np.testing.assert_allclose(cov2, cov1 * fit["cov_scale"], rtol=1e-9)
    assert load_map(m).meta["n_places"] == 30  # the rest of the map is untouched


@pytest.mark.parametrize("kind", ["particles", "places"])
def test_weakest_tunable_evidence_still_recovers_a_kidnapped_robot(xy_map, kind):
    """The tuning grid stops where a kidnapped robot is still found again within a bounded number of frames."""
    order = list(range(0, 12)) + list(range(20, 30))
    loc, z, truth = _stream(xy_map, order)
    weakest = min(EVIDENCE_FACTORS)
    est, _ = replay(loc, z, FilterParams(beta=FilterParams().beta * weakest, particles=500, seed=0, kind=kind,
                                         beta_places=FilterParams().beta_places * weakest))
    errs = np.linalg.norm(est - truth, axis=1) / loc.pose_model.spacing
    assert np.median(errs[3:12]) < 1.0
    assert np.all(errs[12 + 9:] < 2.5)


def test_tune_single_picks_fusion_weights_and_refits_the_covariance(xy_map, tmp_path):
    m = tmp_path / "map"
    shutil.copytree(xy_map, m)
    loc, frames, truth = _stream(m, list(range(30)))
    spacing = loc.pose_model.spacing
    fit = tune_single(loc, frames, truth, radius=2 * spacing)
    assert fit["appearance_weight"] in APPEARANCE_WEIGHTS
    assert set(fit["within_radius_by_weight"]) == {f"{w:g}" for w in APPEARANCE_WEIGHTS}
    assert fit["regional_weight"] in REGIONAL_WEIGHTS
    assert set(fit["within_radius_by_regional_weight"]) == {f"{w:g}" for w in REGIONAL_WEIGHTS}
    best = max(fit["within_radius_by_weight"].values())
    assert best == max(fit["within_radius_by_regional_weight"].values())  # both: the best over the whole grid
    own = ((fit["appearance_weight"], fit["regional_weight"], fit["temperature"])
           == (0.0, DEFAULT_REGIONAL_WEIGHT, loc.pose_model.temperature))  # the build's settings
    # the best setting, or the map's own when the best is at most 2 frames better
    assert fit["within_radius"] == best or (own and best - fit["within_radius"] <= 2 / 30 + 1e-4)
    assert fit["temperature"] in TEMPERATURES and set(fit["within_radius_by_temperature"]) == {f"{t:g}" for t in TEMPERATURES}
    # the temperatures were compared at the build's pose averaging, then the averaging at the chosen temperature
    built_refine = f"{loc.pose_model.refine_spacings:g}"
    assert fit["within_radius_by_temperature"][f"{fit['temperature']:g}"] == fit["within_radius_by_refine"][built_refine]
    assert fit["alpha"] > 0 and 0.9 <= fit["coverage_95"] <= 1.0 and fit["frames"] == 30
    assert (loc.appearance_weight, loc.regional_weight) == (0.0, DEFAULT_REGIONAL_WEIGHT)  # left as it was
    update_meta(m, "single", fit)
    tuned = Localizer(m)
    assert tuned.appearance_weight == fit["appearance_weight"] and tuned.pose_model.alpha == fit["alpha"]
    assert tuned.regional_weight == fit["regional_weight"]
    assert tuned.pose_model.temperature == fit["temperature"]
    assert fit["refine_spacings"] in REFINE_CHOICES and tuned.pose_model.refine_spacings == fit["refine_spacings"]
    assert set(fit["within_radius_by_refine"]) == {f"{f:g}" for f in REFINE_CHOICES}
    # then the verification weight, at the chosen averaging; the build's unless clearly beaten
    built_local = loc.local_weight
    assert built_local == DEFAULT_LOCAL_WEIGHT and fit["local_weight"] in set(LOCAL_WEIGHTS) | {built_local}
    assert set(fit["within_radius_by_local_weight"]) == {f"{w:g}" for w in set(LOCAL_WEIGHTS) | {built_local}}
    assert fit["within_radius_by_refine"][f"{fit['refine_spacings']:g}"] == fit["within_radius_by_local_weight"][
        f"{built_local:g}"]
    assert fit["within_radius"] == fit["within_radius_by_local_weight"][f"{fit['local_weight']:g}"]
    assert tuned.local_weight == fit["local_weight"]
    # asking for another weight falls back to the build's calibration (the fit belongs to the fitted weight)
    other = Localizer(m, LocalizerConfig(map_path=str(m), appearance_weight=0.0))
    assert other.pose_model.alpha == loc.pose_model.alpha and other.pose_model.temperature == loc.pose_model.temperature
    # a map without thumbnails and regional descriptors: the global descriptor alone, the covariance refitted
    update_meta(m, "regional", None)
    (m / "appearance.npy").unlink()
    update_meta(m, "local", None)
    (m / "regional.npy").unlink()
    (m / "local.npy").unlink()
    bare = Localizer(m, LocalizerConfig(map_path=str(m), appearance_weight=0.0, regional_weight=0.0, local_weight=0.0))
    frames0 = [bare.embed(view(draw_scene(100003 + i), np.random.default_rng(i), night=False)) for i in range(10)]
    fit0 = tune_single(bare, frames0, truth[:10], radius=2 * spacing)
    assert fit0["appearance_weight"] == 0.0 and list(fit0["within_radius_by_weight"]) == ["0"]
    assert fit0["regional_weight"] == 0.0 and list(fit0["within_radius_by_regional_weight"]) == ["0"]
    assert fit0["local_weight"] == 0.0 and list(fit0["within_radius_by_local_weight"]) == ["0"]


def test_short_runs_fit_a_wider_covariance():
    """95 % plus one binomial standard error: a 55-frame run cannot vouch for a tight 95 % fit."""
    assert coverage_target(55) == pytest.approx(0.979, abs=1e-3)
    assert coverage_target(900) == pytest.approx(0.957, abs=1e-3)
    assert coverage_target(5) == 0.99
    assert coverage_target(20) > coverage_target(200) > coverage_target(20000) > 0.95


def test_self_calibration_only_widens_and_is_what_the_build_stored(xy_map):
    loc = Localizer(xy_map)
    rec = self_calibrate_sequence(loc, seeds=1)
    assert rec["frames"] == len(loc.map) == 30 and rec["method"].startswith("self")
    assert rec["cov_scale"] == max(rec["fitted_scale"], 1.0)  # never narrower than the filter's own spread
    # the scale reaches the target on those frames (to within the one frame the quantile interpolates into)
    assert rec["coverage_95"] >= max(rec["coverage_95_before"], rec["coverage_target"] - 1 / rec["frames"])
    assert rec["median_error"] > 0  # the frame's own place was left out: it cannot be found exactly
    stored = loc.map.meta["sequence"]["without_odometry"]  # the build ran the same with two seeds
    assert stored["method"] == rec["method"] and stored["frames"] == 30 and stored["cov_scale"] >= 1.0
    assert FilterParams.for_map(loc.map.meta).cov_scale == stored["cov_scale"]
    assert self_calibrate_sequence(loc, max_frames=5)["skipped"].startswith("needs 10")


def test_evidence_fit_keeps_the_default_when_the_run_cannot_tell():
    """Every strength puts the same frames within the radius at the same median error: the default is kept (not
    the first or weakest of the grid), and the covariance scale is fitted for it."""
    from visloc_ros.core.tune import _fit_evidence_and_scale

    rng = np.random.default_rng(0)
    err = rng.normal(0, 1.0, (200, 2))
    cov = np.tile(np.eye(2), (200, 1, 1))
    runs = {b: [(err, cov)] for b in (0.5, 0.7, 1.0, 1.4, 2.0)}
    fit = _fit_evidence_and_scale(runs, radius=2.0, frames=200, seeds=1, default=1.0)
    assert fit["evidence"] == 1.0
    assert 0.5 < fit["cov_scale"] < 2.0  # unit-variance errors, unit covariances: about 1
    runs[1.4] = [(err * 0.5, cov)]  # a strength that is really better still wins
    assert _fit_evidence_and_scale(runs, radius=2.0, frames=200, seeds=1, default=1.0)["evidence"] == 1.4


def test_another_filter_must_win_beyond_chance():
    """A filter other than the default is chosen only when the frames it wins outnumber those it loses beyond a
    coin's chance (one-sided sign test, p < 0.05): 3 wins and no loss is p = 0.125 (the corridor half where the
    particles led by 3 of 56 frames), 5 and none p = 0.031; frames both get right or wrong do not count; a seed
    average counts by its share."""
    from visloc_ros.core.tune import wins_beyond_chance

    default = np.ones(56)
    default[:3] = 0
    assert not wins_beyond_chance(np.ones(56), default)
    default[:5] = 0
    assert wins_beyond_chance(np.ones(56), default)
    assert not wins_beyond_chance(np.ones(56), np.ones(56))  # no disagreement
    other = np.ones(56)
    other[10:12] = 0  # 5 won, 2 lost: p = 0.23
    assert not wins_beyond_chance(other, default)
    half = np.full(56, 0.5)  # two seeds split on every frame: below a default that gets them all
    assert not wins_beyond_chance(half, np.ones(56)) and wins_beyond_chance(np.ones(56), half)


def test_tune_single_verifies_each_frame_and_place_once(xy_map, monkeypatch):
    """The grid replays every frame under many settings; a frame's verification score against a place is computed
    once (a memo on the frame), and the fit is the same as without the memo."""
    import visloc_ros.core.localizer as loc_mod

    loc, frames, truth = _stream(xy_map, list(range(12)))
    calls = []
    real = loc_mod.chamfer_to

    def counting(q, places, mean):
        calls.append(len(places))
        return real(q, places, mean)

    monkeypatch.setattr(loc_mod, "chamfer_to", counting)
    radius = 2 * loc.pose_model.spacing
    fit = tune_single(loc, frames, truth, radius, weights=(0.0, 1.0), regional_weights=(1.0,), temperatures=(0.05,))
    assert 0 < sum(calls) <= len(frames) * len(loc.map)  # at most every (frame, place) pair once
    assert all(e.chamfer is None for e in frames)  # the caller's frames are left as they were
    one = Localizer(xy_map)
    fresh = [replace(e, timings_ms={}) for e in frames]
    for f, e in zip(fresh, frames):  # without the memo: the same estimates
        a = one.localize_embedding(replace(e, chamfer={}))
        b = one.localize_embedding(f)
        np.testing.assert_allclose(a.xyz, b.xyz)
    assert fit["local_weight"] in set(LOCAL_WEIGHTS) | {DEFAULT_LOCAL_WEIGHT}
