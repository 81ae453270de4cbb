import os

import numpy as np
import pytest
import yaml

from visloc_ros.core.errors import MapError
from visloc_ros.core.map_db import FORMAT_VERSION, Places, load_map, write_map


@pytest.fixture
def parts(tmp_path):
    n = 5
    enc = tmp_path / "enc.onnx"
    enc.write_bytes(b"model")
    places = Places([f"{i}.jpg" for i in range(n)], np.arange(15, dtype=float).reshape(5, 3),
                    quat=np.tile([0, 0, 0, 1.0], (n, 1)), session=["s"] * n, cells=np.array([0, 1, 1, 2, 3]))
    return dict(meta={"datum": None}, places=places, descriptors=np.ones((n, 8)), latents=np.ones((n, 4)),
                codebook=np.zeros((2, 2, 4)), encoder_file=enc)


def test_write_load_roundtrip(tmp_path, parts):
    out = write_map(tmp_path / "m", **parts)
    m = load_map(out)
    assert len(m) == 5 and m.meta["format_version"] == FORMAT_VERSION
    assert m.places.images[3] == "3.jpg" and np.allclose(m.places.xyz, parts["places"].xyz)
    assert np.array_equal(m.places.cells, [0, 1, 1, 2, 3]) and m.places.latlonalt is None
    assert isinstance(m.latents, np.memmap) and m.descriptors.dtype == np.float16
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".m.")]  # no temp folder left


def test_no_overwrite_without_force_and_atomic_replace(tmp_path, parts):
    write_map(tmp_path / "m", **parts)
    with pytest.raises(MapError, match="already exists"):
        write_map(tmp_path / "m", **parts)
    parts["places"].images[0] = "new.jpg"
    write_map(tmp_path / "m", overwrite=True, **parts)
    assert load_map(tmp_path / "m").places.images[0] == "new.jpg"


def test_interrupted_write_is_refused_and_old_map_survives(tmp_path, parts, monkeypatch):
    write_map(tmp_path / "m", **parts)
    import visloc_ros.core.map_db as mdb

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mdb, "_write_places", boom)
    with pytest.raises(KeyboardInterrupt):
        write_map(tmp_path / "m", overwrite=True, **parts)
    assert len(load_map(tmp_path / "m")) == 5  # the previous map is intact
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".m.tmp")]
    half = tmp_path / "half"
    half.mkdir()
    (half / "latents.npy").write_bytes(b"")
    with pytest.raises(MapError, match="not a complete map .no map.yaml.: its write was interrupted"):
        load_map(half)


def test_version_missing_files_and_inconsistency(tmp_path, parts):
    out = write_map(tmp_path / "m", **parts)
    with pytest.raises(MapError, match="does not exist"):
        load_map(tmp_path / "none")
    meta = yaml.safe_load((out / "map.yaml").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (out / "map.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(MapError, match="newer than this visloc_ros reads"):
        load_map(out)
    meta["format_version"] = FORMAT_VERSION
    meta["n_places"] = 6
    (out / "map.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(MapError, match="inconsistent"):
        load_map(out)
    (out / "latents.npy").unlink()
    with pytest.raises(MapError, match="missing latents.npy"):
        load_map(out)


def test_appearance_thumbnails_are_optional_and_checked(tmp_path, parts):
    from visloc_ros.core.appearance import DIM

    assert load_map(write_map(tmp_path / "old", **parts)).appearance is None  # maps written before them
    thumbs = np.random.default_rng(0).normal(size=(5, DIM))
    out = write_map(tmp_path / "m", appearance=thumbs, **parts)
    m = load_map(out)
    assert m.appearance.dtype == np.float16 and m.appearance.shape == (5, DIM)
    np.testing.assert_allclose(m.appearance, thumbs, atol=1e-2)
    with pytest.raises(MapError, match="inconsistent map: 5 places, 4 thumbnails"):
        write_map(tmp_path / "bad", appearance=thumbs[:4], **parts)
    np.save(out / "appearance.npy", thumbs[:, :10].astype(np.float16))  # a thumbnail size this code does not use
    with pytest.raises(MapError, match="appearance.npy of shape"):
        load_map(out)


def test_regional_descriptors_are_optional_and_checked(tmp_path, parts):
    from visloc_ros.core.descriptor import REGIONAL_DIM

    assert load_map(write_map(tmp_path / "old", **parts)).regional is None  # maps written before them
    reg = np.random.default_rng(1).normal(size=(5, REGIONAL_DIM))
    out = write_map(tmp_path / "m", regional=reg, **parts)
    m = load_map(out)
    assert m.regional.dtype == np.float16 and m.regional.shape == (5, REGIONAL_DIM) and m.appearance is None
    np.testing.assert_allclose(m.regional, reg, atol=1e-2)
    with pytest.raises(MapError, match="inconsistent map: 5 places, 3 regional descriptors"):
        write_map(tmp_path / "bad", regional=reg[:3], **parts)
    np.save(out / "regional.npy", reg[:4].astype(np.float16))  # a map whose write was mixed up
    with pytest.raises(MapError, match="regional.npy of shape"):
        load_map(out)
    # a map whose map.yaml declares them (its untuned weight uses them) but that lost the file is incomplete
    declared = write_map(tmp_path / "declared", **dict(parts, meta=dict(parts["meta"], regional={"weight": 1.0})),
                         regional=reg)
    assert load_map(declared).regional.shape == (5, REGIONAL_DIM)
    (declared / "regional.npy").unlink()
    with pytest.raises(MapError, match="incomplete: missing regional.npy"):
        load_map(declared)


def test_local_features_are_optional_and_checked(tmp_path, parts):
    from visloc_ros.core.descriptor import LOCAL_CHANNELS

    assert load_map(write_map(tmp_path / "old", **parts)).local is None  # maps written before them
    lf = np.random.default_rng(2).normal(size=(5, 70, LOCAL_CHANNELS))
    out = write_map(tmp_path / "m", local=lf, **parts)
    m = load_map(out)
    assert m.local.dtype == np.float16 and m.local.shape == (5, 70, LOCAL_CHANNELS)
    np.testing.assert_allclose(m.local, lf, atol=1e-2)
    with pytest.raises(MapError, match="inconsistent map: 5 places, 3 local features"):
        write_map(tmp_path / "bad", local=lf[:3], **parts)
    np.save(out / "local.npy", lf[:, :, :8].astype(np.float16))  # features of another layer
    with pytest.raises(MapError, match="local.npy of shape"):
        load_map(out)
    declared = write_map(tmp_path / "declared", **dict(parts, meta=dict(parts["meta"], local={"weight": 2.0})),
                         local=lf)
    (declared / "local.npy").unlink()
    with pytest.raises(MapError, match="incomplete: missing local.npy"):
        load_map(declared)


def test_keypoints_roundtrip_and_are_checked(tmp_path, parts):
    from visloc_ros.core.map_db import KEYPOINT_FILES, KeypointArrays

    rng = np.random.default_rng(0)
    kp = KeypointArrays(rng.uniform(0, 300, (5, 16, 2)), rng.integers(-127, 128, (5, 16, 32)), rng.uniform(size=(5, 16)))
    out = write_map(tmp_path / "m", **dict(parts, meta={"datum": None, "keypoints": {"files": list(KEYPOINT_FILES)}}),
                    keypoints=kp)
    m = load_map(out)
    assert m.keypoints.xy.dtype == np.float16 and m.keypoints.desc.dtype == np.int8 and m.keypoints.score.shape == (5, 16)
    assert np.array_equal(m.keypoints.desc, kp.desc)
    with pytest.raises(MapError, match="inconsistent"):
        write_map(tmp_path / "m2", **parts, keypoints=KeypointArrays(kp.xy[:4], kp.desc[:4], kp.score[:4]))
    np.save(out / KEYPOINT_FILES[2], np.zeros((5, 15), np.float16))  # a score array that does not fit
    with pytest.raises(MapError, match="keypoint arrays of shapes"):
        load_map(out)
    (out / KEYPOINT_FILES[1]).unlink()
    with pytest.raises(MapError, match="missing keypoints_desc.npy"):
        load_map(out)
    assert load_map(write_map(tmp_path / "m3", **parts)).keypoints is None  # a map without them


def test_a_truncated_array_header_is_one_line(tmp_path, parts):
    out = write_map(tmp_path / "m", **parts)
    (out / "latents.npy").write_bytes((out / "latents.npy").read_bytes()[:20])  # cut inside the .npy header
    with pytest.raises(MapError, match="unreadable array file"):
        load_map(out)


@pytest.mark.parametrize("key, value, msg", [("encoder", True, "encoder should be a mapping, not bool"),
                                             ("som", [1, 2], "som should be a mapping, not list"),
                                             ("format_version", "one", "format_version 'one', not a version number"),
                                             ("format_version", True, "not a version number")])
def test_map_yaml_values_of_the_wrong_type_are_one_line(tmp_path, parts, key, value, msg):
    out = write_map(tmp_path / "m", **parts)
    meta = yaml.safe_load((out / "map.yaml").read_text())
    meta[key] = value
    (out / "map.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(MapError, match=msg):
        load_map(out)


def test_replacing_is_one_exchange_and_killed_writes_are_swept(tmp_path, parts):
    import subprocess
    import sys

    from visloc_ros.core.map_db import _exchange

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("A")
    (b / "f").write_text("B")
    _exchange(a, b)
    assert (a / "f").read_text() == "B" and (b / "f").read_text() == "A"
    # what a killed write leaves beside the map: removed by the next write unless its process still runs
    write_map(tmp_path / "m", **parts)
    dead = tmp_path / ".m.tmp-999999"
    dead.mkdir()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        running = tmp_path / f".m.tmp-{alive.pid}"
        running.mkdir()
        parts["places"].images[0] = "new.jpg"
        write_map(tmp_path / "m", overwrite=True, **parts)
        assert not dead.exists() and running.exists()
    finally:
        alive.kill()
        alive.wait()
    assert load_map(tmp_path / "m").places.images[0] == "new.jpg"
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".m.")) == [running.name]


def test_a_full_disk_leaves_the_old_map(tmp_path, parts, monkeypatch):
    import errno

    import visloc_ros.core.map_db as mdb

    write_map(tmp_path / "m", **parts)
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mdb.np, "save", full)
    with pytest.raises(MapError, match=r"cannot write map .*No space left on device \(the disk is full.*is unchanged"):
        write_map(tmp_path / "m", overwrite=True, **parts)
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".m.")]
