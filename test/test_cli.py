"""The `visloc` command end to end, through subprocesses, as a user runs it."""
import json
import shutil

import pytest
import yaml

from conftest import run_visloc

COMMANDS = [[], ["build-map"], ["add-places"], ["localize"], ["eval"], ["map", "info"], ["map", "keypoints"], ["models", "export"],
            ["models", "check"], ["synth"], ["tune"]]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_everywhere(cmd):
    r = run_visloc(*cmd, "--help")
    assert r.returncode == 0 and "usage: visloc" in r.stdout


def test_build_localize_eval(tmp_path, synth_geo):
    map_csv, q_csv = synth_geo
    m = tmp_path / "map"
    r = run_visloc("build-map", "--images-csv", str(map_csv), "--out", str(m), "--encoder-steps", "100",
                   "--latent-dim", "64")
    assert r.returncode == 0, r.stderr
    assert "30 places" in r.stdout and "georeferenced" in r.stdout and "encoder trained on " in r.stdout
    pred = tmp_path / "pred.csv"
    r = run_visloc("localize", "--map", str(m), "--images-csv", str(q_csv), "--out", str(pred))
    assert r.returncode == 0, r.stderr
    lines = pred.read_text().splitlines()
    assert lines[0] == "image,x,y,z,yaw,lat,lon,cov_xx,cov_xy,cov_yy,score,latency_ms"
    assert len(lines) == 16 and lines[1].startswith("query/00000.jpg,")
    assert all(row.split(",")[5] for row in lines[1:])  # lat filled: georeferenced
    r = run_visloc("eval", "--pred", str(pred), "--truth", str(q_csv), "--radius", "2", "5",
                   "--map", str(m), "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    # chance (a random place of 30 on a 60 m loop) is about 17 % within 5 m
    assert rep["overall"]["within_5"] >= 0.6 and set(rep["by_condition"]) <= {"day", "night"}
    assert (tmp_path / "ev" / "trajectory.png").stat().st_size > 10_000
    # a seeded stream is reproducible: same seed, same positions and covariances (latency aside)
    runs = []
    for k in range(2):
        out = tmp_path / f"seq{k}.csv"
        r = run_visloc("localize", "--sequence", "--seed", "1", "--map", str(m), "--images-csv", str(q_csv),
                       "--out", str(out))
        assert r.returncode == 0, r.stderr
        runs.append([ln.rsplit(",", 1)[0] for ln in out.read_text().splitlines()])
    assert runs[0] == runs[1] and len(runs[0]) == 16
    r = run_visloc("map", "info", str(m))
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["n_places"] == 30


def _one_line_error(r, *needles):
    assert r.returncode != 0
    err = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("visloc")]
    assert len(err) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in err[0], err[0]


def test_corrupt_images_are_skipped_or_fail_cleanly(tmp_path, synth_xy):
    src = synth_xy[0].parent
    work = tmp_path / "d"
    shutil.copytree(src, work)
    (work / "ref" / "00003.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg")
    r = run_visloc("build-map", "--images-csv", str(work / "map.csv"), "--out", str(tmp_path / "m"),
                   "--encoder-steps", "50", "--latent-dim", "32")
    assert r.returncode == 0, r.stderr
    assert "00003.jpg" in r.stderr and "29 places (1 images skipped)" in r.stdout
    for p in (work / "ref").glob("*.jpg"):
        p.write_bytes(b"junk")
    r = run_visloc("build-map", "--images-csv", str(work / "map.csv"), "--out", str(tmp_path / "m2"))
    _one_line_error(r, "none of the 30 images could be read")
    assert not (tmp_path / "m2").exists() and not list(tmp_path.glob(".m2*"))


def test_unknown_training_device_fails_before_any_work(tmp_path, synth_xy):
    r = run_visloc("build-map", "--images-csv", str(synth_xy[0]), "--out", str(tmp_path / "m"),
                   "--train-device", "tpu")
    _one_line_error(r, "unknown training device 'tpu'")
    assert not (tmp_path / "m").exists()


def test_bad_csvs(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _one_line_error(run_visloc("build-map", "--images-csv", str(empty), "--out", str(tmp_path / "m")), "empty")
    nopos = tmp_path / "nopos.csv"
    nopos.write_text("image,condition\na.jpg,day\n")
    _one_line_error(run_visloc("build-map", "--images-csv", str(nopos), "--out", str(tmp_path / "m")),
                    "no position columns")
    assert not (tmp_path / "m").exists()
    for flag, value, says in (("--every", "0", "must be at least 1"), ("--min-travel", "-1", "must be at least 0"),
                              ("--min-turn", "ten", "not a number")):
        r = run_visloc("build-map", "--bag", str(tmp_path / "b.mcap"), flag, value, "--out", str(tmp_path / "m"))
        assert r.returncode == 2 and says in r.stderr.strip().splitlines()[-1]


def test_bad_maps(tmp_path, xy_map, synth_xy):
    q = str(synth_xy[1])
    out = str(tmp_path / "p.csv")
    _one_line_error(run_visloc("localize", "--map", str(tmp_path / "nomap"), "--images-csv", q, "--out", out),
                    "does not exist")
    half = tmp_path / "half"
    shutil.copytree(xy_map, half)
    (half / "map.yaml").unlink()
    _one_line_error(run_visloc("localize", "--map", str(half), "--images-csv", q, "--out", out), "interrupted")
    newer = tmp_path / "newer"
    shutil.copytree(xy_map, newer)
    meta = yaml.safe_load((newer / "map.yaml").read_text())
    meta["format_version"] = 99
    (newer / "map.yaml").write_text(yaml.safe_dump(meta))
    _one_line_error(run_visloc("localize", "--map", str(newer), "--images-csv", q, "--out", out), "version 99")
    assert not (tmp_path / "p.csv").exists()


def test_tensorrt_backend_missing_is_one_line(xy_map, synth_xy, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt installed")
    except ImportError:
        pass
    r = run_visloc("localize", "--map", str(xy_map), "--images-csv", str(synth_xy[1]), "--out",
                   str(tmp_path / "p.csv"), "--backend", "tensorrt")
    _one_line_error(r, "tensorrt")


def test_tune_stores_the_fit_in_the_map(tmp_path, xy_map, synth_xy):
    m = tmp_path / "map"
    shutil.copytree(xy_map, m)
    before = (m / "map.yaml").read_text()
    assert yaml.safe_load(before)["sequence"]["without_odometry"]["method"].startswith("self")  # the build's
    r = run_visloc("tune", "--map", str(m), "--self", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "self-calibration on 30 map images" in r.stdout and (m / "map.yaml").read_text() == before
    _one_line_error(run_visloc("tune", "--map", str(m)), "needs --images-csv and --radius")
    _one_line_error(run_visloc("tune", "--map", str(m), "--self", "--radius", "4"), "--self takes no labelled run")
    stream = str(synth_xy[0])  # the map's own images, in the order they were taken
    r = run_visloc("tune", "--map", str(m), "--images-csv", stream, "--radius", "4", "--seeds", "1", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "without_odometry: places filter, evidence" in r.stdout and "; particles: within 4 " in r.stdout
    assert (m / "map.yaml").read_text() == before
    r = run_visloc("tune", "--map", str(m), "--images-csv", stream, "--radius", "4", "--seeds", "1")
    assert r.returncode == 0, r.stderr
    meta = yaml.safe_load((m / "map.yaml").read_text())
    fit = meta["sequence"]["without_odometry"]
    assert fit["frames"] == 30 and fit["radius"] == 4.0 and fit["cov_scale"] > 0 and fit["tuned_on"] == stream
    assert "single images: appearance weight" in r.stdout
    assert meta["single"]["frames"] == 30 and meta["single"]["alpha"] > 0 and "appearance_weight" in meta["single"]
    assert "method" not in fit  # the labelled fit replaced the build's self-calibration
    # both filters were fitted; the place filter is chosen only when clearly better, and either keeps its own fit
    assert set(fit["by_filter"]) == {"particles", "places"} and fit["filter"] in ("particles", "places")
    assert fit["by_filter"][fit["filter"]]["evidence"] == fit["evidence"]
    r = run_visloc("localize", "--sequence", "--map", str(m), "--images-csv", str(synth_xy[1]),
                   "--out", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    nopos = tmp_path / "nopos.csv"
    nopos.write_text("image\nref/00000.jpg\n")
    _one_line_error(run_visloc("tune", "--map", str(m), "--images-csv", str(nopos), "--radius", "4"), "position")
    _one_line_error(run_visloc("tune", "--map", str(m), "--images-csv", stream, "--radius", "0"), "--radius")
    _one_line_error(run_visloc("tune", "--map", str(tmp_path / "none"), "--images-csv", stream, "--radius", "4"),
                    "does not exist")


def test_a_map_built_with_a_users_place_network_carries_it(tmp_path, synth_xy):
    """`visloc build-map --cnn` with a real ONNX network of another shape: the map keeps a copy and uses it for
    localize, add-places and tune without being told again; a network that does not take images fails first."""
    pytest.importorskip("torch")
    from conftest import export_place_network

    map_csv, q_csv = synth_xy
    own = export_place_network(tmp_path / "own.onnx")
    _one_line_error(run_visloc("build-map", "--images-csv", str(map_csv), "--out", str(tmp_path / "bad"),
                               "--cnn", str(map_csv)), "is not an ONNX model")
    assert not (tmp_path / "bad").exists()
    m = tmp_path / "map"
    r = run_visloc("build-map", "--images-csv", str(map_csv), "--out", str(m), "--encoder-steps", "100",
                   "--latent-dim", "32", "--cnn", str(own))
    assert r.returncode == 0, r.stderr
    assert "CNN cnn.onnx (112-d)" in r.stdout
    meta = yaml.safe_load((m / "map.yaml").read_text())
    assert meta["cnn"]["layout"] == "global" and meta["cnn"]["dim"] == 112
    assert (m / "cnn.onnx").read_bytes() == own.read_bytes()
    assert not meta["regional"] and not meta["local"]  # no such parts in a user's network
    own.unlink()  # the map needs nothing outside itself
    pred = tmp_path / "pred.csv"
    r = run_visloc("localize", "--map", str(m), "--images-csv", str(q_csv), "--out", str(pred))
    assert r.returncode == 0, r.stderr
    r = run_visloc("eval", "--pred", str(pred), "--truth", str(q_csv), "--radius", "5", "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    # chance is about 17 % within 5 m (a random place of 30 on a 60 m loop); this stand-in network (mid-level
    # ImageNet features, plain GeM) finds 47 %, most of its misses among the night queries
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["overall"]["within_5"] >= 0.35
    r = run_visloc("add-places", "--map", str(m), "--images-csv", str(q_csv), "--session", "later")
    assert r.returncode == 0, r.stderr
    assert (m / "cnn.onnx").is_file() and yaml.safe_load((m / "map.yaml").read_text())["n_places"] == 45
    r = run_visloc("tune", "--map", str(m), "--images-csv", str(q_csv), "--radius", "5", "--seeds", "1")
    assert r.returncode == 0, r.stderr
    (m / "cnn.onnx").unlink()
    _one_line_error(run_visloc("localize", "--map", str(m), "--images-csv", str(q_csv), "--out", str(pred)),
                    "incomplete: missing cnn.onnx")


def test_keypoints_added_to_a_map_built_without_them_give_the_verified_fix(tmp_path, synth_xy):
    shutil.copytree(synth_xy[0].parent, tmp_path / "ds")  # its images are removed at the end
    map_csv, q_csv = tmp_path / "ds" / synth_xy[0].name, tmp_path / "ds" / synth_xy[1].name
    m = tmp_path / "map"
    r = run_visloc("build-map", "--images-csv", str(map_csv), "--out", str(m), "--encoder-steps", "100",
                   "--latent-dim", "64", "--no-keypoints")
    assert r.returncode == 0 and "no keypoints" in r.stdout, r.stderr
    assert yaml.safe_load((m / "map.yaml").read_text())["keypoints"] is None
    r = run_visloc("localize", "--map", str(m), "--images-csv", str(q_csv), "--out", str(tmp_path / "p.csv"),
                   "--keypoint-weight", "2")
    _one_line_error(r, "has no learned keypoints", "visloc map keypoints")
    r = run_visloc("map", "keypoints", str(m))
    assert r.returncode == 0 and "512 keypoints for each of its 30 places" in r.stdout, r.stderr
    fast, verified = tmp_path / "fast.csv", tmp_path / "verified.csv"
    for out, extra in ((fast, ["--fast"]), (verified, [])):
        r = run_visloc("localize", "--map", str(m), "--images-csv", str(q_csv), "--out", str(out), *extra)
        assert r.returncode == 0, r.stderr
    assert "verified fix" in r.stdout
    r = run_visloc("eval", "--pred", str(verified), "--truth", str(q_csv), "--radius", "2", "5", "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["overall"]["within_5"] >= 0.6
    lat = lambda p: sorted(float(ln.rsplit(",", 1)[1]) for ln in p.read_text().splitlines()[1:])  # noqa: E731
    assert lat(verified)[7] > lat(fast)[7]  # the check costs time: the median latency includes it
    # the map's images gone: adding keypoints again says so in one line
    for p in (map_csv.parent / "ref").glob("*.jpg"):
        p.unlink()
    _one_line_error(run_visloc("map", "keypoints", str(m)), "cannot be read", "keypoints need the images")
