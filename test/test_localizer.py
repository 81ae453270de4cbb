import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import map_with_local_features

from visloc_ros.core.build import DEFAULT_LOCAL_WEIGHT, DEFAULT_REGIONAL_WEIGHT, add_places, build_map, choose_setting
from visloc_ros.core.config import LocalizerConfig
from visloc_ros.core.dataset import read_csv
from visloc_ros.core.errors import DatasetError, MapError
from visloc_ros.core.geo import geodetic_to_enu
from visloc_ros.core.localizer import Localizer
from visloc_ros.core.map_db import load_map, update_meta
from visloc_ros.core.pose import PLAIN_REFINE, PoseModel, REFINE_CHOICES, TEMPERATURES
from visloc_ros.core.synthetic import make_dataset


def test_map_contents(geo_map):
    m = load_map(geo_map)
    assert len(m) == 30 and m.meta["georeferenced"] and m.meta["has_orientation"]
    assert m.meta["pose_model"]["alpha"] > 0 and m.meta["calibration"]["n"] > 0
    assert (geo_map / "encoder.onnx").is_file()
    # the calibration tried every radius x pose averaging x vote temperature and the map uses the one it chose
    pm, cal = m.meta["pose_model"], m.meta["calibration"]
    recall = cal["within_3_spacings_by_radius_refine_temperature"]
    assert len(recall) == 2 * len(REFINE_CHOICES) * len(TEMPERATURES)
    chosen = f"{pm['radius']:g}/{pm['refine_spacings']:g}/{pm['temperature']:g}"
    assert cal["median_error"] == cal["median_error_by_radius_refine_temperature"][chosen]
    keys = {tuple(float(v) for v in k.split("/")): x for k, x in recall.items()}
    medians = {tuple(float(v) for v in k.split("/")): x
               for k, x in cal["median_error_by_radius_refine_temperature"].items()}
    assert choose_setting(keys, medians, cal["n"], PoseModel.temperature) == tuple(
        float(v) for v in chosen.split("/"))


def test_calibration_changes_the_vote_temperature_only_when_clearly_better():
    med = {k: 1.0 for k in [(3.0, 0.0, 0.02), (3.0, 0.0, 0.05), (10.0, 0.0, 0.05)]}
    close = {(3.0, 0.0, 0.02): 0.430, (3.0, 0.0, 0.05): 0.400, (10.0, 0.0, 0.05): 0.4275}
    assert choose_setting(close, med, 400, 0.05) == (10.0, 0.0, 0.05)  # 1 trial better: the usual temperature
    clear = {(3.0, 0.0, 0.02): 0.964, (3.0, 0.0, 0.05): 0.923, (10.0, 0.0, 0.05): 0.941}
    assert choose_setting(clear, med, 222, 0.05) == (3.0, 0.0, 0.02)
    tie = {(3.0, 0.0, 0.02): 0.9, (3.0, 0.0, 0.05): 0.9, (10.0, 0.0, 0.05): 0.9}
    assert choose_setting(tie, {**med, (10.0, 0.0, 0.05): 0.5}, 100, 0.05) == (10.0, 0.0, 0.05)  # lower median


def test_calibration_averages_the_pose_only_when_clearly_better():
    # held-out map images lie between places, so averaging wins their median error by construction: at the same
    # recall the consensus's best place alone (PLAIN_REFINE) is kept, whatever the medians
    med = {(10.0, 0.0, 0.05): 0.62, (10.0, PLAIN_REFINE, 0.05): 1.0, (10.0, 2.0, 0.05): 0.62, (3.0, PLAIN_REFINE, 0.05): 1.0}
    tie = {(10.0, 0.0, 0.05): 0.986, (10.0, PLAIN_REFINE, 0.05): 0.986, (10.0, 2.0, 0.05): 0.986,
           (3.0, PLAIN_REFINE, 0.05): 0.982}
    assert choose_setting(tie, med, 222, 0.05) == (10.0, PLAIN_REFINE, 0.05)
    # 1 trial of 222 better is noise too; 12 of 400 is a fit (the campus: its GPS-labelled photos gain by averaging)
    assert choose_setting({**tie, (10.0, 2.0, 0.05): 0.991}, med, 222, 0.05) == (10.0, PLAIN_REFINE, 0.05)
    clear = {(10.0, 0.0, 0.05): 0.485, (10.0, PLAIN_REFINE, 0.05): 0.455, (10.0, 2.0, 0.05): 0.458,
             (3.0, PLAIN_REFINE, 0.05): 0.43}
    assert choose_setting(clear, med, 400, 0.05) == (10.0, 0.0, 0.05)
    # a temperature other than the usual one is then weighed against the setting chosen at the usual one
    other_t = {**clear, (10.0, 0.0, 0.02): 0.49}
    assert choose_setting(other_t, {**med, (10.0, 0.0, 0.02): 0.5}, 400, 0.05) == (10.0, 0.0, 0.05)
    assert choose_setting({**clear, (10.0, PLAIN_REFINE, 0.02): 0.52}, {**med, (10.0, PLAIN_REFINE, 0.02): 1.0},
                          400, 0.05) == (10.0, PLAIN_REFINE, 0.02)


def test_localizes_queries_at_their_place(geo_map, synth_geo):
    loc = Localizer(geo_map)
    q = read_csv(synth_geo[1])
    errs, covs = [], []
    for i in range(len(q)):
        f = loc.localize(q.path(i))
        assert f.ok and f.state == "LOCALIZED"
        truth = geodetic_to_enu(q.latlonalt[i, 0], q.latlonalt[i, 1], 0.0, loc.datum)
        errs.append(np.linalg.norm(f.xyz[:2] - truth[:2]))
        covs.append(np.trace(f.cov2))
        assert np.all(np.linalg.eigvalsh(f.cov2) > 0)
        assert f.cov6.shape == (6, 6) and np.all(np.diag(f.cov6) > 0)
        assert set(f.timings_ms) >= {"decode", "preprocess", "cnn", "encoder", "index", "pose"}
        assert np.isfinite(f.yaw) and 0 <= f.score <= 1
    assert np.median(errs) < 2.0  # places are 2 m apart
    assert len(set(np.round(covs, 6))) > 1  # never a constant covariance


def test_pose_votes_are_divided_by_the_crowd_on_maps_built_with_it(xy_map, synth_xy, tmp_path):
    loc = Localizer(xy_map)
    assert loc.map.meta["pose_model"]["crowding"] is True and loc.pose_model.crowding
    xy = loc.map.places.xyz[:, :2]
    ids = np.array([3, 0, 3, len(xy) - 1])
    want = [(np.linalg.norm(xy - xy[i], axis=1) <= loc.pose_model.radius).sum() for i in ids]
    np.testing.assert_array_equal(loc.crowd(ids), want)
    assert (loc._crowd >= 0).sum() == 3  # counted once per place, when it first is a candidate
    e = loc.embed(read_csv(synth_xy[1]).path(0))
    f = loc.localize_embedding(e)
    assert (loc._crowd[f.candidate_ids[:loc.config.top_k]] >= 1).all()
    # the fix is the consensus of the candidates with the crowd as the pose module computes it
    from visloc_ros.core.pose import estimate
    top = f.candidate_ids[:loc.config.top_k]
    scores = loc.verify(e, top, f.candidate_scores[:loc.config.top_k])[1] if loc.verifies(e) else \
        f.candidate_scores[:loc.config.top_k]
    np.testing.assert_allclose(estimate(loc.map.places.xyz[top], scores, loc.pose_model, crowd=loc.crowd(top)).xyz,
                               f.xyz)
    # a map built before it keeps the plain vote its calibration was made with
    m = tmp_path / "map"
    shutil.copytree(xy_map, m)
    update_meta(m, "pose_model", {k: v for k, v in loc.map.meta["pose_model"].items() if k != "crowding"})
    old = Localizer(m)
    assert not old.pose_model.crowding
    old.localize_embedding(replace(e, timings_ms={}))
    assert old._crowd is None


def test_predict_gps(geo_map, synth_geo):
    loc = Localizer(geo_map)
    q = read_csv(synth_geo[1])
    ll = loc.predict_gps(q.path(0))
    assert ll.shape == (2,)
    assert np.linalg.norm((ll - q.latlonalt[0, :2]) * [111e3, 95e3]) < 5.0
    from visloc_ros.core.preprocess import load_image
    assert np.allclose(loc.predict_gps(load_image(q.path(0))), ll)


def test_predict_gps_needs_georeferenced_map(xy_map):
    with pytest.raises(MapError, match="not georeferenced"):
        Localizer(xy_map).predict_gps(np.zeros((240, 320, 3), np.uint8))


def test_min_score_withholds_the_fix(xy_map, synth_xy):
    from visloc_ros.core.config import LocalizerConfig
    loc = Localizer(xy_map, LocalizerConfig(min_score=1.0))
    f = loc.localize(read_csv(synth_xy[1]).path(0))
    assert not f.ok and f.state == "UNCERTAIN" and "below min_score" in f.message


def test_cnn_mismatch_is_refused(xy_map, tmp_path):
    import shutil
    from visloc_ros.core.descriptor import default_cnn_path
    other = tmp_path / "other.onnx"
    shutil.copyfile(default_cnn_path(), other)
    with open(other, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(MapError, match="different CNN"):
        Localizer(xy_map, cnn_model=other)


def test_add_places_grows_the_map(tmp_path):
    from visloc_ros.core.encoder import EncoderTraining
    a = make_dataset(tmp_path / "a", n_places=20, n_queries=5, seed=5)
    b = make_dataset(tmp_path / "b", n_places=20, n_queries=5, seed=6)
    m = build_map(read_csv(a[0]), tmp_path / "map", training=EncoderTraining(latent_dim=32, steps=60))
    ds_b = read_csv(b[0])
    ds_b.xyz = ds_b.xyz + np.array([100.0, 0, 0])  # a second area
    ds_b.root = b[0].parent
    import csv
    rows = [{"image": n, "x": f"{p[0]:.3f}", "y": f"{p[1]:.3f}"} for n, p in zip(ds_b.images, ds_b.xyz)]
    with open(b[0].parent / "shifted.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["image", "x", "y"])
        w.writeheader()
        w.writerows(rows)
    assert m.meta["sequence"]["without_odometry"]["frames"] == 20  # the build's self-calibration
    m2 = add_places(m.path, read_csv(b[0].parent / "shifted.csv"), "second")
    assert len(m2) == 40 and m2.meta["sessions"] == ["map", "second"]
    assert m2.meta["sequence"]["without_odometry"]["frames"] == 40  # redone over the grown map
    assert m2.meta["encoder"]["sha256"] == m.meta["encoder"]["sha256"]  # nothing retrained
    assert m.meta["appearance"] == {"file": "appearance.npy", "thumbnail": [64, 32], "patch": 8}
    assert m.meta["regional"] == {"file": "regional.npy", "block": 10, "grid": 4, "dim": 1792, "weight": 1.0}
    assert m2.appearance.shape == (40, m.appearance.shape[1])  # thumbnails of the new places appended
    np.testing.assert_array_equal(m2.appearance[:20], m.appearance)
    assert m2.regional.shape == (40, 1792)  # and their regional descriptors
    np.testing.assert_array_equal(m2.regional[:20], m.regional)
    f = Localizer(m2).localize(read_csv(b[1]).path(0))
    assert f.xyz[0] > 50  # found in the added area
    with pytest.raises(MapError, match="already has a session"):
        add_places(m.path, read_csv(b[0].parent / "shifted.csv"), "second")
    g = make_dataset(tmp_path / "g", n_places=5, n_queries=1, seed=7, datum=__import__(
        "visloc_ros.core.geo", fromlist=["Datum"]).Datum(31.0, 34.0))
    with pytest.raises(DatasetError, match="not georeferenced"):
        add_places(m.path, read_csv(g[0]), "geo")


def test_appearance_weight_ranks_every_place_by_fused_similarity(xy_map, synth_xy, tmp_path):
    from dataclasses import replace as dc_replace

    from visloc_ros.core.appearance import fuse
    from visloc_ros.core.config import LocalizerConfig

    q = read_csv(synth_xy[1]).path(0)
    plain = Localizer(xy_map)
    # untuned: no thumbnails, the regional descriptor at the build's weight (the one its calibration ranked with)
    assert plain.appearance_weight == 0.0 and plain.fused
    assert plain.regional_weight == DEFAULT_REGIONAL_WEIGHT == plain.map.meta["regional"]["weight"]
    assert plain.map.meta["calibration"]["regional_weight"] == DEFAULT_REGIONAL_WEIGHT
    e = plain.embed(q)
    assert e.thumb is not None and e.latent.shape == (plain.map.latents.shape[1],)
    assert e.regional.shape == (1792,) and abs(np.linalg.norm(e.regional) - 1) < 1e-4
    # (the verification's re-ranking off: this is the fused similarity's ranking)
    fused = Localizer(xy_map, LocalizerConfig(map_path=str(xy_map), appearance_weight=1.0, regional_weight=0.5,
                                              local_weight=0.0))
    f = fused.localize_embedding(dc_replace(e, timings_ms={}))
    # brute force: the regional descriptors centred on the map's mean, then cosine; z-scores fused
    reg = np.asarray(plain.map.regional, np.float32)
    mu = reg.mean(0)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    want = fuse(np.asarray(plain.map.latents) @ e.latent,
                [(np.asarray(plain.map.appearance, np.float32) @ e.thumb, 1.0),
                 (unit(reg - mu) @ unit(e.regional - mu), 0.5)])
    np.testing.assert_array_equal(f.candidate_ids, np.argsort(-want)[:len(f.candidate_ids)])
    np.testing.assert_allclose(f.candidate_scores, np.sort(want)[::-1][:len(f.candidate_ids)], rtol=1e-4)
    # the map's fitted weights and covariance factor (section single, written by `visloc tune`) are used
    m = tmp_path / "map"
    shutil.copytree(xy_map, m)
    update_meta(m, "single", {"appearance_weight": 0.5, "regional_weight": 2.0, "alpha": 2.0})
    tuned = Localizer(m)
    assert tuned.appearance_weight == 0.5 and tuned.regional_weight == 2.0 and tuned.pose_model.alpha == 2.0
    # a map written before regional descriptors existed cannot be asked for them
    update_meta(m, "regional", None)
    (m / "regional.npy").unlink()
    assert Localizer(m, LocalizerConfig(map_path=str(m), regional_weight=0)).embed(q).regional is None
    with pytest.raises(MapError, match="no regional CNN descriptors"):
        Localizer(m)
    update_meta(m, "single", {"appearance_weight": 0.5, "alpha": 2.0})
    # a map written before thumbnails existed cannot be asked for them
    (m / "appearance.npy").unlink()
    assert load_map(m).appearance is None
    assert Localizer(m, LocalizerConfig(map_path=str(m), appearance_weight=0)).embed(q).thumb is None
    with pytest.raises(MapError, match="no appearance thumbnails"):
        Localizer(m)


def test_maps_above_dense_max_fuse_the_index_candidates(synth_xy, tmp_path, monkeypatch):
    """Large maps (more places than DENSE_MAX) rank the SOM's candidates by the fused similarity, at build
    (calibration) and at query time; here DENSE_MAX is lowered so a small map takes that path."""
    import visloc_ros.core.build as build_mod
    import visloc_ros.core.localizer as loc_mod
    from visloc_ros.core.appearance import fuse
    from visloc_ros.core.config import LocalizerConfig
    from visloc_ros.core.encoder import EncoderTraining

    monkeypatch.setattr(build_mod, "DENSE_MAX", 5)
    monkeypatch.setattr(loc_mod, "DENSE_MAX", 5)
    m = build_map(read_csv(synth_xy[0]), tmp_path / "big", training=EncoderTraining(latent_dim=64, steps=50))
    assert m.meta["calibration"]["n"] > 0 and m.meta["calibration"]["regional_weight"] == DEFAULT_REGIONAL_WEIGHT
    loc = Localizer(m.path, LocalizerConfig(map_path=str(m.path), min_candidates=12, n_probe=1, local_weight=0.0))
    assert loc.fused and not loc._dense
    e = loc.embed(read_csv(synth_xy[1]).path(3))
    c = loc.config
    ids = loc.index.query(e.latent, max(c.top_k, c.min_candidates), c.n_probe, c.min_candidates).ids
    assert len(ids) < len(m)  # only the probed cells' places
    reg = np.asarray(m.regional, np.float32)
    mu = reg.mean(0)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    want = fuse(np.asarray(m.latents)[ids] @ e.latent, [(unit(reg[ids] - mu) @ unit(e.regional - mu), 1.0)])
    f = loc.localize_embedding(e)
    np.testing.assert_array_equal(f.candidate_ids, ids[np.argsort(-want)][:len(f.candidate_ids)])


def test_a_localizer_keeps_blas_to_one_thread(xy_map):
    """OpenBLAS threads busy-wait after each call and take a core from the CNN: a Localizer limits numpy's BLAS
    to one thread (checked in a fresh process)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from threadpoolctl import threadpool_info; import numpy; "
            "from visloc_ros.core.localizer import Localizer; "
            "n = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']; "
            "Localizer(sys.argv[1]); print(json.dumps(n()))")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code, str(xy_map)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    after = json.loads(out.stdout.strip().splitlines()[-1])
    assert after and all(n == 1 for n in after)


def test_verification_reranks_the_best_places_by_local_features(xy_map, synth_xy, tmp_path):
    """The build stores every place's local CNN features and the untuned verification weight; a place whose local
    features are the frame's own (planted in a copy of the map) rises to the top of the frame's candidates; with
    weight 0 the ranking is the similarity's alone; the fix reports its similarities, not the verified scores."""
    m = load_map(xy_map)
    assert m.local is not None and m.local.shape[:2] == (len(m), m.meta["local"]["positions"])
    assert m.meta["local"]["weight"] == DEFAULT_LOCAL_WEIGHT and m.meta["calibration"]["local_weight"] == DEFAULT_LOCAL_WEIGHT
    q = read_csv(synth_xy[1])
    loc = Localizer(xy_map)
    e = loc.embed(q.path(0))
    assert e.local is not None and loc.verifies(e)
    plain = Localizer(xy_map, LocalizerConfig(map_path=str(xy_map), local_weight=0.0))
    f0 = plain.localize_embedding(e)
    assert "verify" not in f0.timings_ms
    np.testing.assert_array_equal(np.diff(f0.candidate_scores[:20]) <= 0, True)  # similarity order
    planted = f0.candidate_ids[7]  # a place the similarity ranks 8th gets the frame's own local features
    copy = map_with_local_features(xy_map, tmp_path / "map", planted, e.local)
    strong = Localizer(copy, LocalizerConfig(map_path=str(copy), local_weight=8.0))
    f = strong.localize_embedding(replace(e, timings_ms={}))
    assert "verify" in f.timings_ms and int(f.candidate_ids[0]) == int(planted)
    assert set(f.candidate_ids[:20].tolist()) == set(f0.candidate_ids[:20].tolist())  # the same places, re-ranked
    sim = dict(zip(f0.candidate_ids.tolist(), f0.candidate_scores.tolist()))
    np.testing.assert_allclose(f.candidate_scores[:20], [sim[i] for i in f.candidate_ids[:20].tolist()], rtol=1e-6)
    assert f.score == pytest.approx(min(max(sim[int(planted)], 0.0), 1.0), rel=1e-6)


def test_the_verified_fix_checks_the_best_candidates_by_keypoints(xy_map, synth_xy, tmp_path):
    """The map's keypoints decide among the fast fix's candidates: with a place's stored keypoints replaced by the
    query's own (and the other checked candidates' by those of an unrelated scene), the verified fix ranks it first
    and moves there; a map without keypoints gives none and says how to add them."""
    import shutil

    from visloc_ros.core.config import LocalizerConfig
    from visloc_ros.core.keypoints import pack_descriptors
    from visloc_ros.core.map_db import KEYPOINT_FILES
    from visloc_ros.core.preprocess import load_image
    from visloc_ros.core.synthetic import draw_scene

    q = sorted((synth_xy[1].parent / "query").glob("*.jpg"))[0]
    rgb = load_image(q)
    loc = Localizer(xy_map)
    assert loc.verifies_keypoints
    fast = loc.localize(rgb)
    target = int(fast.candidate_ids[5])  # a place the fast fix ranks 6th
    kp = loc.keypoint_extractor()(rgb)
    other = loc.keypoint_extractor()(draw_scene(999))
    checked = fast.candidate_ids[:loc.config.keypoint_candidates]
    loc.close()
    planted = tmp_path / "planted"
    shutil.copytree(xy_map, planted)
    for name, a, b in zip(KEYPOINT_FILES, (kp.xy.astype(np.float16), pack_descriptors(kp.desc), kp.scores.astype(np.float16)),
                          (other.xy.astype(np.float16), pack_descriptors(other.desc), other.scores.astype(np.float16))):
        arr = np.load(planted / name)
        arr[checked] = b
        arr[target] = a
        np.save(planted / name, arr)
    loc = Localizer(planted)
    fast = loc.localize(rgb)
    verified = loc.verify_fix(rgb, fast)
    assert verified.verified and not fast.verified
    assert verified.candidate_ids[0] == target and verified.pose_scores[0] == verified.pose_scores.max()
    xy = loc.map.places.xyz[:, :2]
    near = lambda f: np.linalg.norm(f.xyz[:2] - xy[target])  # noqa: E731
    assert near(verified) <= near(fast)  # the consensus moves towards the place the keypoints found
    assert len(verified.inliers) == loc.config.keypoint_candidates and verified.inliers[5] == verified.inliers.max()
    assert np.all(np.linalg.eigvalsh(verified.cov2) > 0)
    assert {"kp_extract", "kp_match", "kp_geometry", "kp_pose"} <= set(verified.timings_ms)
    loc.close()
    # keypoints off: no verified fix; asked for on a map without them: one line that says how to add them
    assert not Localizer(planted, LocalizerConfig(map_path=str(planted), keypoint_weight=0.0)).verifies_keypoints
    bare = tmp_path / "bare"
    shutil.copytree(xy_map, bare)
    import yaml
    meta = yaml.safe_load((bare / "map.yaml").read_text())
    meta["keypoints"] = None
    (bare / "map.yaml").write_text(yaml.safe_dump(meta))
    assert not Localizer(bare).verifies_keypoints
    with pytest.raises(MapError, match="visloc map keypoints"):
        Localizer(bare, LocalizerConfig(map_path=str(bare), keypoint_weight=2.0))


def test_a_map_yaml_value_of_the_wrong_type_is_one_line(geo_map, tmp_path):  # found by bench_reliability's fuzz
    import yaml

    m = tmp_path / "m"
    shutil.copytree(geo_map, m)
    meta = yaml.safe_load((m / "map.yaml").read_text())
    meta["pose_model"]["spacing"] = "two metres"
    (m / "map.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(MapError, match=r"map.yaml has a malformed value \(ValueError"):
        Localizer(m)
