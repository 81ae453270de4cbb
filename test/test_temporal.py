from dataclasses import replace

import numpy as np
from conftest import map_with_local_features

from visloc_ros.core.localizer import Embedding, Localizer
from visloc_ros.core.map_db import load_map
from visloc_ros.core.synthetic import draw_scene, view
from visloc_ros.core.filter_params import FilterParams
from visloc_ros.core.particle_filter import SequenceFilter


def test_tracks_a_sequence_and_recovers_after_kidnapping(xy_map):
    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    seed_of = {name: int(name.split("/")[1][:5]) for name in places.images}
    rng = np.random.default_rng(0)
    filt = SequenceFilter(loc, FilterParams(particles=500, seed=0))
    order = list(range(0, 12)) + list(range(20, 30))  # kidnapped from place 11 to place 20
    errs = []
    for i in order:
        img = view(draw_scene(1 * 100003 + seed_of[places.images[i]]), rng, night=False)
        f = filt.update(img)
        errs.append(np.linalg.norm(f.xyz[:2] - places.xyz[i, :2]))
        assert np.all(np.linalg.eigvalsh(f.cov2) > 0)
    errs = np.array(errs)
    spacing = loc.pose_model.spacing
    assert np.median(errs[3:12]) < 1.0 * spacing          # tracking
    assert np.all(errs[12 + 3:] < 2.5 * spacing)          # recovered within 3 frames of the jump


def test_odometry_driven_filter_recovers_after_kidnapping(xy_map):
    """With odometry the filter tracks through frames it cannot place, and after the robot is carried away (the
    images jump, the wheels say one ordinary step) the new place takes over within a bounded number of frames."""
    from visloc_ros.core.map_filter import OdometryTracker

    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    seed_of = {name: int(name.split("/")[1][:5]) for name in places.images}
    rng = np.random.default_rng(1)
    filt = SequenceFilter(loc, FilterParams(particles=1000, seed=1))
    odo = OdometryTracker()
    order = list(range(0, 13)) + list(range(18, 30)) + list(range(0, 12))  # 30 places on a loop; carried 12 -> 18
    odom_xy, errs = np.zeros(2), []
    for k, i in enumerate(order):
        if k:
            prev = order[k - 1]
            step = places.xyz[i, :2] - places.xyz[prev, :2] if i in (prev + 1, 0) else \
                places.xyz[prev, :2] - places.xyz[prev - 1, :2]  # carried: the wheels report a normal step
            odom_xy = odom_xy + step
        img = view(draw_scene(1 * 100003 + seed_of[places.images[i]]), rng, night=k % 4 == 3)
        f = filt.update(img, odom_delta=odo.delta(odom_xy, 0.0, 0.0))
        errs.append(np.linalg.norm(f.xyz[:2] - places.xyz[i, :2]))
    errs = np.array(errs)
    spacing = loc.pose_model.spacing
    assert np.median(errs[3:13]) < 1.5 * spacing                 # tracking
    assert np.all(errs[13 + 15:] < 2.0 * spacing)                # recovered within 15 frames of the jump


def test_hub_prior_marks_the_place_that_resembles_every_other(xy_map, tmp_path):
    """A place whose latent is the average of all the others answers every query a little; the filter starts that
    place's running mean evidence highest, so it cannot win the first frames on likeness alone."""
    import shutil

    m = tmp_path / "map"
    shutil.copytree(xy_map, m)
    lat = np.load(m / "latents.npy")
    hub = lat[np.arange(len(lat)) != 7].mean(0)
    lat[7] = hub / np.linalg.norm(hub)
    np.save(m / "latents.npy", lat)
    loc = Localizer(m)
    filt = SequenceFilter(loc, FilterParams(particles=200))
    assert int(np.argmax(filt._hubness)) == 7
    assert SequenceFilter(loc, FilterParams(particles=200, hub_prior=False))._hubness is None
    # the first frame's evidence is the frame's z-scores minus that prior: the hub is pushed down
    z = np.asarray(lat[3])
    e = Embedding(z)
    with_prior = filt._evidence(e, loc.localize_embedding(e), odom=False)
    s = lat @ z
    zs = (s - s.mean()) / s.std()
    np.testing.assert_allclose(with_prior, zs - filt._hubness, rtol=1e-4, atol=1e-5)
    assert int(np.argmax(with_prior)) == 3


def test_with_odometry_a_frame_enters_the_hub_means_after_the_delay(xy_map, monkeypatch):
    """With odometry a frame's z-scores enter the places' running means ``hub_delay_odom`` frames after its own (the
    robot's own passage must not lower the places just behind it yet); without odometry (``hub_delay`` 0) at once;
    the frames waiting are bounded by bytes; a reset forgets them."""
    from visloc_ros.core import map_filter

    loc = Localizer(xy_map)
    lat = np.asarray(load_map(xy_map).latents)
    zs = [(lat @ lat[i] - (lat @ lat[i]).mean()) / (lat @ lat[i]).std() for i in range(5)]

    def evidence(filt, i, odom):
        e = Embedding(lat[i])
        return filt._evidence(e, loc.localize_embedding(e), odom=odom)

    params = FilterParams(particles=50, hub_prior=False, hub_memory=0.5, hub_memory_odom=0.5, hub_delay_odom=3)
    filt = SequenceFilter(loc, params)
    for i in range(3):
        np.testing.assert_allclose(evidence(filt, i, True), zs[i], rtol=1e-4, atol=1e-4)  # nothing subtracted yet
        np.testing.assert_allclose(filt.bg, 0.0)
    evidence(filt, 3, True)  # the fourth frame lets the first one in
    np.testing.assert_allclose(filt.bg, 0.5 * zs[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(evidence(filt, 4, True), zs[4] - 0.5 * zs[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(filt.bg, 0.5 * zs[0] + 0.5 * (zs[1] - 0.5 * zs[0]), rtol=1e-4, atol=1e-4)
    filt.reset()
    assert filt.bg is None and len(filt.waiting) == 0

    evidence(filt, 0, False)  # without odometry: at once
    np.testing.assert_allclose(filt.bg, 0.5 * zs[0], rtol=1e-4, atol=1e-4)

    monkeypatch.setattr(map_filter, "WAITING_BYTES", 4 * len(lat))  # room for one waiting frame
    filt = SequenceFilter(loc, params)
    evidence(filt, 0, True)
    evidence(filt, 1, True)
    np.testing.assert_allclose(filt.bg, 0.5 * zs[0], rtol=1e-4, atol=1e-4)
    assert len(filt.waiting) == 1


def test_filter_fix_is_the_localizers_own(xy_map):
    """On a map ranked by fused similarity the filter computes the frame's similarity to every place once and
    hands it to the single-image fix: its candidates are exactly those the localizer finds on its own without the
    candidate verification (the filter's estimate replaces the fix's; its evidence verifies only its own few best
    places, test below)."""
    from dataclasses import replace

    loc = Localizer(xy_map)
    assert loc.fused  # built with regional descriptors, weight 1
    places = load_map(xy_map).places
    e = loc.embed(view(draw_scene(1 * 100003 + int(places.images[5].split("/")[1][:5])),
                       np.random.default_rng(3), night=True))
    assert loc.verifies(e) and "verify" in loc.localize_embedding(replace(e, timings_ms={})).timings_ms
    own = loc.localize_embedding(replace(e, timings_ms={}), verify=False)
    fix = SequenceFilter(loc, FilterParams(particles=200)).update_embedding(replace(e, timings_ms={}))
    np.testing.assert_array_equal(fix.candidate_ids, own.candidate_ids)
    np.testing.assert_allclose(fix.candidate_scores, own.candidate_scores, rtol=1e-6)
    assert fix.timings_ms["index"] > 0 and fix.timings_ms["sequence"] > 0 and "verify" not in fix.timings_ms


def test_estimate_reports_the_heavier_mode_with_its_spread(xy_map):
    """The estimate starts its mean shift where the particles' weight is densest: with two clusters it reports the
    one holding most of the weight (not the one with most particles), at its centre, with the cluster's own
    spread plus the place spacing as covariance; a few particles strewn kilometres away change nothing."""
    loc = Localizer(xy_map)
    s = loc.pose_model.spacing
    filt = SequenceFilter(loc, FilterParams(particles=2000))
    rng = np.random.default_rng(0)
    heavy, light = np.array([10.0, 5.0]) * s, np.array([-20.0, 0.0]) * s
    pos = np.vstack([heavy + rng.normal(0, 0.6 * s, (600, 2)), light + rng.normal(0, 0.6 * s, (1390, 2)),
                     rng.uniform(-1e5, 1e5, (10, 2))])
    w = np.r_[np.full(600, 0.7 / 600), np.full(1390, 0.299 / 1390), np.full(10, 0.001 / 10)]
    filt.pos = pos
    fix = loc.localize_embedding(Embedding(load_map(xy_map).latents[0]))
    mass = filt._estimate(fix, w, None, odom=False)
    assert np.linalg.norm(fix.xyz[:2] - heavy) < 0.2 * s
    assert 0.69 < mass < 0.71
    expected = np.cov(pos[:600].T, bias=True) + s * s * np.eye(2)
    np.testing.assert_allclose(fix.cov2, expected, rtol=0.1, atol=0.05 * s * s)
    # both clusters equally heavy but the lighter one spread wide: the compact one is the mode
    filt.pos = np.vstack([heavy + rng.normal(0, 0.6 * s, (1000, 2)), light + rng.normal(0, 6 * s, (1000, 2))])
    filt.centre = None
    filt._estimate(fix, np.full(2000, 1 / 2000), None, odom=False)
    assert np.linalg.norm(fix.xyz[:2] - heavy) < 0.2 * s


def test_fit_summary_says_where_the_covariance_scale_comes_from():
    from visloc_ros.core.filter_params import fit_summary

    assert fit_summary({}) == ("without odometry: places, covariance scale 1 (default); "
                               "with odometry: particles, covariance scale 1 (default)")
    meta = {"sequence": {"without_odometry": {"method": "self: ...", "cov_scale": 9.82, "cov_scale_places": 4.5},
                         "with_odometry": {"evidence": 4.2, "cov_scale": 0.7, "tuned_on": "run.csv"}}}
    assert fit_summary(meta) == ("without odometry: places, covariance scale 4.5 (self-calibrated at build); "
                                 "with odometry: particles, covariance scale 0.7 (evidence 4.2, tuned on run.csv)")
    meta["sequence"]["without_odometry"] = {"filter": "particles", "evidence": 2.0, "cov_scale": 3.0, "tuned_on": "a"}
    assert fit_summary(meta).startswith("without odometry: particles, covariance scale 3 (evidence 2, tuned on a)")
    assert fit_summary(meta, "places").endswith("; running the places filter")


def _place_views(xy_map, order, rng, night_every=0):
    places = load_map(xy_map).places
    seed_of = {name: int(name.split("/")[1][:5]) for name in places.images}
    for k, i in enumerate(order):
        yield i, view(draw_scene(1 * 100003 + seed_of[places.images[i]]), rng,
                      night=bool(night_every) and k % night_every == night_every - 1)


def test_place_filter_tracks_recovers_and_is_deterministic(xy_map):
    """The histogram filter over places follows a stream, takes a kidnapped robot's new place within 3 frames, and
    (no particles) gives the same estimates on every run; its covariance is positive definite."""
    from visloc_ros.core.place_filter import PlaceFilter
    from visloc_ros.core.temporal import make_filter

    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    spacing = loc.pose_model.spacing
    order = list(range(0, 12)) + list(range(20, 30))  # kidnapped from place 11 to place 20
    frames = [(i, loc.embed(img)) for i, img in _place_views(xy_map, order, np.random.default_rng(0))]
    runs = []
    for _ in range(2):
        filt = make_filter(loc, FilterParams(), kind="places")
        assert isinstance(filt, PlaceFilter)
        est = []
        for i, e in frames:
            f = filt.update_embedding(replace(e, timings_ms={}))
            assert np.all(np.linalg.eigvalsh(f.cov2) > 0) and 0 < f.support <= 1
            est.append(f.xyz[:2].copy())
        runs.append(np.array(est))
    np.testing.assert_array_equal(runs[0], runs[1])
    errs = np.linalg.norm(runs[0] - places.xyz[[i for i, _ in frames], :2], axis=1)
    assert np.median(errs[3:12]) < 1.0 * spacing           # tracking
    assert np.all(errs[12 + 3:] < 2.5 * spacing)           # recovered within 3 frames of the jump


def test_place_filter_with_odometry_carries_the_belief(xy_map):
    """With odometry the belief moves with the wheels: through night frames, and after a kidnapping (the images
    jump, the wheels report an ordinary step) the new place takes over within a bounded number of frames."""
    from visloc_ros.core.map_filter import OdometryTracker
    from visloc_ros.core.place_filter import PlaceFilter

    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    spacing = loc.pose_model.spacing
    filt = PlaceFilter(loc, FilterParams(kind="places"))
    odo = OdometryTracker()
    order = list(range(0, 13)) + list(range(18, 30)) + list(range(0, 12))
    odom_xy, errs = np.zeros(2), []
    for k, (i, img) in enumerate(_place_views(xy_map, order, np.random.default_rng(1), night_every=4)):
        if k:
            prev = order[k - 1]
            step = places.xyz[i, :2] - places.xyz[prev, :2] if i in (prev + 1, 0) else \
                places.xyz[prev, :2] - places.xyz[prev - 1, :2]
            odom_xy = odom_xy + step
        f = filt.update(img, odom_delta=odo.delta(odom_xy, 0.0, 0.0))
        errs.append(np.linalg.norm(f.xyz[:2] - places.xyz[i, :2]))
    errs = np.array(errs)
    assert np.median(errs[3:13]) < 1.5 * spacing
    assert np.all(errs[13 + 15:] < 2.0 * spacing)


def test_place_filter_neighbours_and_nearest_place():
    from visloc_ros.core.map_filter import PlaceLookup
    from visloc_ros.core.place_filter import _neighbours

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (300, 2))
    nb, nb_small = _neighbours(xy, 4.0, 2.0, chunk=64)
    for i in range(0, 300, 17):
        for table, reach in ((nb, 4.0), (nb_small, 2.0)):
            want = set(np.flatnonzero(np.linalg.norm(xy - xy[i], axis=1) <= reach))
            assert set(table[i]) == want  # padding repeats the place itself, which is within reach
    look = PlaceLookup(xy, 2.0, far_m=6.0, margin_m=8.0)
    q = rng.uniform(0, 50, (200, 2))
    idx, dist = look.nearest_place(q)
    true_d = np.linalg.norm(q[:, None] - xy[None], axis=2).min(1)
    assert np.all(idx >= 0)
    np.testing.assert_allclose(np.linalg.norm(q - xy[idx], axis=1), true_d, atol=2.0)  # raster at half a spacing
    far, _ = look.nearest_place(np.array([[500.0, 500.0]]))
    assert far[0] == -1


def test_filter_kind_from_the_map_and_unknown_kind(xy_map):
    from visloc_ros.core.place_filter import PlaceFilter
    from visloc_ros.core.temporal import make_filter

    meta = {"sequence": {"without_odometry": {
        "filter": "places", "evidence": 0.7, "cov_scale": 3.0,
        "by_filter": {"particles": {"evidence": 1.4, "cov_scale": 2.0}, "places": {"evidence": 0.7, "cov_scale": 3.0}}}}}
    p = FilterParams.for_map(meta)
    assert (p.kind, p.beta_places, p.cov_scale_places, p.beta, p.cov_scale) == ("places", 0.7, 3.0, 1.4, 2.0)
    selfcal = {"sequence": {"without_odometry": {"method": "self", "cov_scale": 9.8, "cov_scale_places": 4.0}}}
    p = FilterParams.for_map(selfcal)
    assert (p.kind, p.kind_odom, p.cov_scale, p.cov_scale_places) == ("places", "particles", 9.8, 4.0)  # untuned
    tuned = {"sequence": {"without_odometry": {"filter": "particles", "evidence": 2.0},
                          "with_odometry": {"filter": "particles", "evidence": 4.0}}}
    assert FilterParams.for_map(tuned).kind == "particles"
    loc = Localizer(xy_map)
    assert isinstance(make_filter(loc, FilterParams.for_map(meta, particles=100, kind_odom="places")), PlaceFilter)
    assert isinstance(make_filter(loc, FilterParams.for_map(tuned, particles=100)), SequenceFilter)
    assert isinstance(make_filter(loc, FilterParams(particles=100), kind="particles"), SequenceFilter)
    import pytest
    with pytest.raises(ValueError, match="unknown sequence filter"):
        make_filter(loc, FilterParams(kind="kalman"))


def test_untuned_filter_runs_places_without_odometry_and_particles_with_it(xy_map):
    """An untuned map's filter sends frames without odometry to the place filter and frames with odometry to the
    particles; when odometry starts, the particles take over from a fresh start and track within a few frames."""
    from visloc_ros.core.place_filter import PlaceFilter
    from visloc_ros.core.temporal import FilterByMode, make_filter

    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    spacing = loc.pose_model.spacing
    filt = make_filter(loc, FilterParams(particles=500))
    assert isinstance(filt, FilterByMode)
    assert isinstance(filt.filters[False], PlaceFilter) and isinstance(filt.filters[True], SequenceFilter)
    assert filt.filters[True].lookup is filt.filters[False].lookup  # the map's tables are built once
    assert filt.filters[True]._hubness is filt.filters[False]._hubness
    errs = []
    for k, (i, img) in enumerate(_place_views(xy_map, list(range(0, 20)), np.random.default_rng(2))):
        with_odom = k >= 8
        f = filt.update(img, odom_delta=places.xyz[i, :2] - places.xyz[i - 1, :2] if with_odom else None)
        assert filt.mode is with_odom
        errs.append(np.linalg.norm(f.xyz[:2] - places.xyz[i, :2]))
    errs = np.array(errs)
    assert np.median(errs[3:8]) < 1.0 * spacing     # the place filter, no odometry
    assert np.all(errs[8 + 4:] < 1.5 * spacing)     # the particles, with odometry, after a fresh start


def _blind_stream(loc, xy_map, seen, blind, rng):
    """Frames of ``seen`` places, then ``blind`` frames that say nothing (every place equally similar)."""
    frames = [(i, loc.embed(img), None) for i, img in _place_views(xy_map, seen, rng)]
    flat = np.ones(len(loc.map), np.float32)
    return frames + [(None, frames[-1][1], flat) for _ in range(blind)]


def test_place_filter_steady_model_keeps_the_pace_through_blind_frames(xy_map):
    """A stream moving one place per frame, then six frames that say nothing (a dark tunnel): the steady model
    carries the belief on at the stream's pace; the agile model alone (``place_switch`` 0) cannot know where the
    robot went and falls behind."""
    from visloc_ros.core.place_filter import PlaceFilter

    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    spacing = loc.pose_model.spacing
    frames = _blind_stream(loc, xy_map, list(range(0, 10)), 6, np.random.default_rng(3))
    truth = places.xyz[np.arange(16), :2]
    final = {}
    for switch in (0.05, 0.0):
        filt = PlaceFilter(loc, FilterParams(hub_prior=False, place_switch=switch))
        est = [filt.update_embedding(replace(e, timings_ms={}), sims=s).xyz[:2] for _, e, s in frames]
        final[switch] = np.linalg.norm(np.array(est) - truth, axis=1)
    assert np.median(final[0.05][3:10]) < 1.0 * spacing
    assert np.all(final[0.05][10:] < 1.5 * spacing)            # kept the pace through the blind frames
    assert final[0.0][-1] > 2.5 * spacing                      # without the steady model: lost its way


def test_place_filter_carries_slow_odometry(xy_map):
    """Odometry steps shorter than half a place spacing still move the belief (they are summed until they reach
    it): six frames that say nothing, a third of a spacing per frame, end two places on."""
    from visloc_ros.core.place_filter import PlaceFilter

    loc = Localizer(xy_map)
    places = load_map(xy_map).places
    spacing = loc.pose_model.spacing
    frames = _blind_stream(loc, xy_map, list(range(0, 8)), 6, np.random.default_rng(4))
    filt = PlaceFilter(loc, FilterParams(hub_prior=False, kind="places"))
    for k, (i, e, s) in enumerate(frames):
        if k == 0:
            delta = None
        elif i is not None:
            delta = places.xyz[i, :2] - places.xyz[i - 1, :2]
        else:  # a third of the step from place 7 towards place 8, then 8 towards 9
            j = 7 + (k - 8) // 3
            delta = (places.xyz[j + 1, :2] - places.xyz[j, :2]) / 3
        f = filt.update_embedding(replace(e, timings_ms={}), odom_delta=delta, sims=s)
    assert np.linalg.norm(f.xyz[:2] - places.xyz[9, :2]) < 1.5 * spacing


def test_evidence_hands_the_best_similarities_out_in_the_verified_order(xy_map, tmp_path):
    """The filters' evidence keeps every similarity value of the frame but gives the ``verify_top`` highest to
    those places in the order the candidate verification ranks them: a place ranked 3rd whose local features are
    the frame's own (planted in a copy of the map) gets the highest value and becomes the first frame's estimate."""
    from visloc_ros.core.config import LocalizerConfig
    from visloc_ros.core.place_filter import PlaceFilter

    loc0 = Localizer(xy_map)
    places = load_map(xy_map).places
    e = loc0.embed(view(draw_scene(1 * 100003 + int(places.images[5].split("/")[1][:5])),
                        np.random.default_rng(3), night=True))
    s = loc0.similarities(e)
    order = np.argsort(-s)
    planted = int(order[2])
    copy = map_with_local_features(xy_map, tmp_path / "map", planted, e.local)
    loc = Localizer(copy, LocalizerConfig(map_path=str(copy), local_weight=8.0))
    p = FilterParams(hub_prior=False)
    filt = PlaceFilter(loc, p)
    v = filt._verified(e, s)
    assert np.argmax(v) == planted and v[planted] == s[order[0]]
    np.testing.assert_array_equal(np.sort(v), np.sort(s))  # the same values, handed out again
    rest = np.setdiff1d(np.arange(len(s)), order[:p.verify_top])
    np.testing.assert_array_equal(v[rest], s[rest])  # beyond the verify_top best, nothing moves
    fix = filt.update_embedding(replace(e, timings_ms={}))
    np.testing.assert_allclose(fix.xyz[:2], places.xyz[planted, :2])
    # verify_top 0, or a map whose verification weight is 0, leaves the similarities as they are
    assert PlaceFilter(loc, replace(p, verify_top=0))._verified(e, s) is s
    plain = Localizer(copy, LocalizerConfig(map_path=str(copy), local_weight=0.0))
    assert PlaceFilter(plain, p)._verified(e, s) is s
    fix0 = PlaceFilter(loc, replace(p, verify_top=0)).update_embedding(replace(e, timings_ms={}))
    np.testing.assert_allclose(fix0.xyz[:2], places.xyz[int(order[0]), :2])


def test_the_alias_check_scores_paths_carried_back_along_the_odometry(xy_map):
    """A robot drove past places 0..9 of the ring map (each frame's evidence at its own place): the path that ends
    at place 9 hears all of it; the path ending at place 29 hears nothing, unless turned by the angle that maps
    places 0..9 onto 20..29, where the evidence then is."""
    from visloc_ros.core.map_filter import OdometryTracker

    loc = Localizer(xy_map)
    f = SequenceFilter(loc, FilterParams.for_map(loc.map.meta))
    xy = loc.map.places.xyz[:, :2]
    ring = np.arctan2(xy[:, 1], xy[:, 0])
    odo, rows, odos = np.zeros(2), [], []
    for i in range(10):
        if i:
            odo = odo + xy[i] - xy[i - 1]
        ev = np.zeros(len(xy))
        ev[i] = 1.0
        rows.append(ev)
        odos.append(odo.copy())
    ev, back = np.stack(rows), odo - np.stack(odos)
    assert f._track_score(xy[9], 0.0, ev, back) == np.float64(10.0)
    # weighted frames (an alternative's starting score over the remembered track, older frames forgotten)
    forget = 0.5 ** np.arange(10)[::-1]
    assert abs(f._track_score(xy[9], 0.0, ev, back, forget) - forget.sum()) < 1e-9
    assert f._track_score(xy[29], 0.0, ev, back) < 1.0
    turn = float(np.angle(np.exp(1j * (ring[29] - ring[9]))))
    shifted = np.roll(ev, 20, axis=1)  # the same drive, had it been past places 20..29
    assert f._track_score(xy[29], turn, shifted, back) > 9.5
    assert f._track_score(xy[9], 0.0, shifted, back) < 1.0
    # the tracker's rotation follows a turn of the robot's believed heading
    tr = OdometryTracker()
    tr.delta((0.0, 0.0), 0.1, 0.3)
    tr.delta((1.0, 0.0), 0.1, 0.3)
    assert abs(tr.heading() - 0.3) < 1e-9
    tr.turn(np.pi)
    assert abs(abs(np.angle(np.exp(1j * (tr.heading() - 0.3)))) - np.pi) < 1e-9


def test_the_kept_alternative_follows_the_odometry_widens_the_ellipse_and_takes_over(xy_map):
    """One alternative hypothesis is kept beside the particles: it moves with the odometry turned by its heading
    difference, its score sums its evidence minus the tracked position's (forgotten at 1 / alias_memory per frame),
    the covariance takes it in while it scores close, and when it passes ``alias_switch`` on ``alias_confirm``
    frames the filter moves there and the position it left becomes the alternative, with the opposite score."""
    loc = Localizer(xy_map)
    xy = loc.map.places.xyz[:, :2]
    p = FilterParams(hub_prior=False, verify_top=0, alias_window=10, alias_memory=10.0, alias_switch=5.0,
                     alias_confirm=2, alias_radius_spacings=3.0)
    f = SequenceFilter(loc, p)
    e0 = loc.embed(np.zeros((240, 320, 3), np.uint8))
    sims = np.full(len(xy), 0.1, np.float32)
    sims[0] = 1.0
    f.update_embedding(replace(e0, timings_ms={}), sims=sims, odom_delta=np.zeros(2))
    f.scale[:] = 1.0
    ring = {"main": 0, "twin": 15}  # opposite sides of the ring: place i's twin is i + 15
    f.alt = (xy[15].copy(), np.pi, 0.0)
    spacing = loc.pose_model.spacing

    def frame(ev_main: float, ev_twin: float):
        """The robot drives on one place (the odometry's step); its twin moves one place on too."""
        old = ring["main"]
        main, twin = ring["main"], ring["twin"] = (old + 1) % 30, (ring["twin"] + 1) % 30
        step = xy[main] - xy[old]
        # each frame's evidence a bump about each place, as neighbouring places look alike
        ev = sum(a * np.exp(-0.5 * (np.linalg.norm(xy - xy[i], axis=1) / spacing) ** 2)
                 for i, a in ((main, ev_main), (twin, ev_twin)))
        fix = replace(loc.localize_embedding(replace(e0, timings_ms={}), fused=sims, verify=False),
                      xyz=np.array([*xy[main], 0.0]), cov2=np.eye(2) * 0.25)
        f._alias_check(fix, ev, step, np.array([main, twin]))
        return fix

    # the twin's step is the robot's turned by a half turn (and pulled onto the places the evidence supports)
    fix = frame(1.0, 1.0)
    assert np.linalg.norm(f.alt[0] - xy[16]) < 0.1 * spacing
    assert abs(f.alt[2]) < 0.2 and f.alias_wins == 0
    # an alternative scoring as well as the tracked position: the ellipse reaches it (a two-point mixture)
    d = xy[16] - fix.xyz[:2]
    assert d @ np.linalg.solve(fix.cov2, d) < 5.991
    # the twin hears more: the score grows by the difference, forgetting a tenth per frame
    before = f.alt[2]
    frame(1.0, 4.0)
    assert abs(f.alt[2] - (0.9 * before + 3.0)) < 0.3
    before = f.alt[2]
    frame(1.0, 4.0)
    assert abs(f.alt[2] - (0.9 * before + 3.0)) < 0.3 and f.alias_wins == 1
    fix = frame(1.0, 4.0)  # second frame above the switch: the filter moves to the twin
    assert np.linalg.norm(fix.xyz[:2] - xy[19]) < 0.1 * spacing
    assert np.linalg.norm(f.pos.mean(0) - xy[19]) < spacing
    left, turn, score = f.alt
    np.testing.assert_allclose(left, xy[4])
    assert turn == -np.pi and score < -p.alias_switch
    # an alternative holding less than alias_share of the belief stays out of the ellipse
    far = xy[(ring["twin"] + 1) % 30].copy()
    f.alt = (far, np.pi, -20.0)
    fix = frame(1.0, 1.0)
    assert f.alt is not None and 1.0 / (1.0 + np.exp(-f.alt[2] / p.alias_temperature)) < p.alias_share
    np.testing.assert_allclose(fix.cov2, np.eye(2) * 0.25)
    # one whose score falls below -alias_drop is forgotten
    f.alt = (xy[(ring["twin"] + 1) % 30].copy(), np.pi, -p.alias_drop + 0.5)
    frame(5.0, 0.0)
    assert f.alt is None


def test_the_alias_tracks_memory_is_bounded_by_bytes(xy_map, monkeypatch):
    """The alias check remembers alias_memory frames of evidence, but beyond its window no more than TRACK_BYTES
    (one row per frame, 4 bytes a place): on a map too large for that it keeps the window alone."""
    from visloc_ros.core import particle_filter

    loc = Localizer(xy_map)
    p = FilterParams(alias_window=40, alias_memory=200.0)
    assert SequenceFilter(loc, p).track.maxlen == 200
    monkeypatch.setattr(particle_filter, "TRACK_BYTES", 4 * len(loc.map) * 100)
    assert SequenceFilter(loc, p).track.maxlen == 100
    monkeypatch.setattr(particle_filter, "TRACK_BYTES", 4 * len(loc.map) * 5)
    assert SequenceFilter(loc, p).track.maxlen == 40
