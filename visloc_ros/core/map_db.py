"""The map folder: ``map.yaml``, ``places.sqlite``, ``descriptors.npy``, ``latents.npy``,
``som_codebook.npy``, ``encoder.onnx``, ``appearance.npy`` (the places' thumbnails), ``regional.npy`` (their
regional CNN descriptors), ``local.npy`` (their local CNN features) and ``keypoints_xy.npy``,
``keypoints_desc.npy``, ``keypoints_score.npy`` (their learned keypoints, :mod:`.keypoints`); these are optional:
maps written before them, or built without them, have none.

Written atomically: everything goes into a hidden temp folder beside the target, ``map.yaml`` last,
then one rename. A folder without ``map.yaml`` is an interrupted write and is refused on load, as is a
format version newer than this code, or files that disagree on the number of places.
"""
from __future__ import annotations

import datetime as _dt
import errno
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .appearance import DIM as APPEARANCE_DIM
from .descriptor import LAYOUT_GLOBAL, LOCAL_CHANNELS, MAP_CNN_FILE, REGIONAL_DIM
from .errors import MapError
from .geo import Datum

FORMAT_VERSION = 1
MAP_YAML = "map.yaml"
PLACES_DB = "places.sqlite"
DESCRIPTORS = "descriptors.npy"
LATENTS = "latents.npy"
APPEARANCE = "appearance.npy"  # optional: places' thumbnails (maps written before it have none)
REGIONAL = "regional.npy"  # optional: places' regional CNN descriptors (likewise)
LOCAL = "local.npy"  # optional: places' local CNN features (likewise)
CODEBOOK = "som_codebook.npy"
KEYPOINT_FILES = ("keypoints_xy.npy", "keypoints_desc.npy", "keypoints_score.npy")  # optional: learned keypoints
KEYPOINT_DTYPES = (np.float16, np.int8, np.float16)

_SCHEMA = """
CREATE TABLE places (
    id INTEGER PRIMARY KEY,      -- row of descriptors.npy / latents.npy
    image TEXT NOT NULL,         -- image path as given when the map was built
    x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL,   -- map frame (ENU metres when georeferenced)
    qx REAL, qy REAL, qz REAL, qw REAL,                  -- orientation in the map frame, when known
    lat REAL, lon REAL, alt REAL,                        -- WGS84, when georeferenced
    stamp_ns INTEGER,
    session TEXT NOT NULL,       -- capture session (build or `visloc map add` run)
    condition TEXT,
    cell INTEGER NOT NULL        -- SOM cell (row * cols + col)
);
CREATE INDEX places_cell ON places(cell);
"""


@dataclass
class Places:
    """Place attributes as arrays, row ``i`` = place id ``i``."""

    images: list[str]
    xyz: np.ndarray
    quat: np.ndarray | None = None
    latlonalt: np.ndarray | None = None
    stamp_ns: np.ndarray | None = None
    session: list[str] = field(default_factory=list)
    condition: list[str] | None = None
    cells: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def concat(self, other: "Places") -> "Places":
        def cat(a, b, n_a, n_b, width):
            if a is None and b is None:
                return None
            a = np.full((n_a, width), np.nan) if a is None else a.reshape(n_a, -1)
            b = np.full((n_b, width), np.nan) if b is None else b.reshape(n_b, -1)
            return np.concatenate([a, b])
        n, m = len(self), len(other)
        stamp = None
        if self.stamp_ns is not None or other.stamp_ns is not None:
            stamp = np.concatenate([self.stamp_ns if self.stamp_ns is not None else np.full(n, -1),
                                    other.stamp_ns if other.stamp_ns is not None else np.full(m, -1)]).astype(np.int64)
        cond = None
        if self.condition is not None or other.condition is not None:
            cond = (self.condition or [""] * n) + (other.condition or [""] * m)
        return Places(self.images + other.images, np.concatenate([self.xyz, other.xyz]),
                      cat(self.quat, other.quat, n, m, 4), cat(self.latlonalt, other.latlonalt, n, m, 3),
                      stamp, self.session + other.session, cond,
                      None if self.cells is None or other.cells is None else np.concatenate([self.cells, other.cells]))


def _write_places(path: Path, p: Places) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(_SCHEMA)
        def opt(a, i, j):
            if a is None:
                return None
            v = float(a[i, j])
            return None if np.isnan(v) else v
        rows = []
        for i in range(len(p)):
            rows.append((i, p.images[i], *map(float, p.xyz[i]),
                         *(opt(p.quat, i, j) for j in range(4)), *(opt(p.latlonalt, i, j) for j in range(3)),
                         None if p.stamp_ns is None or p.stamp_ns[i] < 0 else int(p.stamp_ns[i]),
                         p.session[i], None if p.condition is None else p.condition[i], int(p.cells[i])))
        con.executemany("INSERT INTO places VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
    finally:
        con.close()


def _read_places(path: Path) -> Places:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT image, x, y, z, qx, qy, qz, qw, lat, lon, alt, stamp_ns, session, condition, cell "
                           "FROM places ORDER BY id").fetchall()
    except sqlite3.DatabaseError as e:
        raise MapError(f"{path} is not a readable places database: {e}") from None
    finally:
        con.close()
    if not rows:
        return Places([], np.zeros((0, 3)), session=[], cells=np.zeros(0, np.int32))
    cols = list(zip(*rows))
    num = lambda c: np.array([np.nan if v is None else v for v in c], dtype=float)  # noqa: E731
    try:
        quat = np.stack([num(cols[j]) for j in range(4, 8)], 1)
        lla = np.stack([num(cols[j]) for j in range(8, 11)], 1)
        stamp = np.array([-1 if v is None else v for v in cols[11]], dtype=np.int64)
        xyz = np.stack([num(cols[j]) for j in range(1, 4)], 1)
        cells = np.array(cols[14], dtype=np.int32)
    except (ValueError, TypeError, OverflowError) as e:
        raise MapError(f"{path} holds a value of the wrong type: {e}") from None
    return Places(list(cols[0]), xyz,
                  None if np.isnan(quat).all() else quat, None if np.isnan(lla).all() else lla,
                  None if (stamp < 0).all() else stamp, list(cols[12]),
                  None if all(v is None for v in cols[13]) else [v or "" for v in cols[13]],
                  cells)


@dataclass
class KeypointArrays:
    """Every place's learned keypoints (:mod:`.keypoints`), row ``i`` = place ``i`` (memory-mapped when loaded)."""

    xy: np.ndarray     # (N, K, 2) float16 pixels at the canonical size of the image's orientation
    desc: np.ndarray   # (N, K, D) int8 unit descriptors x 127
    score: np.ndarray  # (N, K) float16

    def __len__(self) -> int:
        return len(self.xy)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.xy, self.desc, self.score

    def concat(self, other: "KeypointArrays") -> "KeypointArrays":
        return KeypointArrays(*(np.concatenate([np.asarray(a), np.asarray(b)])
                                for a, b in zip(self.arrays(), other.arrays())))

    def save(self, folder: Path) -> None:
        """Write the three arrays into ``folder`` (:data:`KEYPOINT_FILES`), each to a temp file then renamed."""
        for name, a, dtype in zip(KEYPOINT_FILES, self.arrays(), KEYPOINT_DTYPES):
            tmp = folder / f".{name}.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(a, dtype=dtype))
            tmp.replace(folder / name)


@dataclass
class MapData:
    """A loaded (or about to be written) map."""

    path: Path
    meta: dict
    places: Places
    descriptors: np.ndarray   # (N, D) float16 raw CNN descriptors (memory-mapped when loaded)
    latents: np.ndarray       # (N, L) float32 L2-normalised (memory-mapped when loaded)
    codebook: np.ndarray      # (rows, cols, L) float32
    appearance: np.ndarray | None = None  # (N, appearance.DIM) float16 thumbnails (memory-mapped), None in older maps
    regional: np.ndarray | None = None  # (N, REGIONAL_DIM) float16 regional CNN descriptors (likewise)
    local: np.ndarray | None = None  # (N, P, LOCAL_CHANNELS) float16 local CNN features (likewise)
    keypoints: "KeypointArrays | None" = None  # learned keypoints (likewise)

    @property
    def datum(self) -> Datum | None:
        d = self.meta.get("datum")
        return Datum(float(d["lat"]), float(d["lon"]), float(d.get("alt", 0.0))) if d else None

    @property
    def encoder_path(self) -> Path:
        return self.path / self.meta["encoder"]["file"]

    def __len__(self) -> int:
        return len(self.places)


def _write_yaml(path: Path, meta: dict) -> None:
    """``meta`` as YAML, flushed to disk before the caller renames it into place."""
    with open(path, "w") as fh:
        yaml.safe_dump(meta, fh, sort_keys=False)
        fh.flush()
        os.fsync(fh.fileno())


def write_map(out: str | Path, meta: dict, places: Places, descriptors: np.ndarray, latents: np.ndarray,
              codebook: np.ndarray, encoder_file: str | Path, overwrite: bool = False,
              appearance: np.ndarray | None = None, regional: np.ndarray | None = None,
              local: np.ndarray | None = None, cnn_file: str | Path | None = None,
              keypoints: KeypointArrays | None = None) -> Path:
    """Write a complete map folder atomically (temp folder + rename); the encoder file is copied in, and
    ``cnn_file`` (a user's place-recognition network, ``meta['cnn']['file']``) when given."""
    out = Path(out).absolute()
    n = len(places)
    if not (len(descriptors) == len(latents) == n == len(places.cells)):
        raise MapError(f"refusing to write an inconsistent map: {n} places, {len(descriptors)} descriptors, "
                       f"{len(latents)} latents")
    if appearance is not None and len(appearance) != n:
        raise MapError(f"refusing to write an inconsistent map: {n} places, {len(appearance)} thumbnails")
    if regional is not None and len(regional) != n:
        raise MapError(f"refusing to write an inconsistent map: {n} places, {len(regional)} regional descriptors")
    if local is not None and len(local) != n:
        raise MapError(f"refusing to write an inconsistent map: {n} places, {len(local)} local features")
    if keypoints is not None and len(keypoints) != n:
        raise MapError(f"refusing to write an inconsistent map: {n} places, {len(keypoints)} keypoint sets")
    if out.exists() and not overwrite:
        raise MapError(f"{out} already exists (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        np.save(tmp / DESCRIPTORS, np.ascontiguousarray(descriptors, dtype=np.float16))
        np.save(tmp / LATENTS, np.ascontiguousarray(latents, dtype=np.float32))
        np.save(tmp / CODEBOOK, np.ascontiguousarray(codebook, dtype=np.float32))
        if appearance is not None:
            np.save(tmp / APPEARANCE, np.ascontiguousarray(appearance, dtype=np.float16))
        if regional is not None:
            np.save(tmp / REGIONAL, np.ascontiguousarray(regional, dtype=np.float16))
        if local is not None:
            np.save(tmp / LOCAL, np.ascontiguousarray(local, dtype=np.float16))
        if keypoints is not None:
            keypoints.save(tmp)
        shutil.copyfile(encoder_file, tmp / "encoder.onnx")
        if cnn_file is not None:
            shutil.copyfile(cnn_file, tmp / meta["cnn"]["file"])
        _write_places(tmp / PLACES_DB, places)
        meta = dict(meta)
        meta.update({"format_version": FORMAT_VERSION, "n_places": n,
                     "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        meta["encoder"] = dict(meta.get("encoder", {}), file="encoder.onnx")
        _write_yaml(tmp / MAP_YAML, meta)  # last: its presence marks a complete map
        _fsync_tree(tmp)  # the new map's bytes are on disk before any name points at them (power loss)
        if out.exists():
            # one atomic step: the old map moves to tmp's name as the new one takes its place; a kill at any moment
            # leaves ``out`` either the whole old map or the whole new one
            _exchange(tmp, out)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.rename(tmp, out)
        _fsync_dir(out.parent)
    except OSError as e:
        try:
            free = shutil.disk_usage(out.parent).free
        except OSError:
            free = None
        shutil.rmtree(tmp, ignore_errors=True)
        full = e.errno == errno.ENOSPC or (free is not None and free < (1 << 20))
        raise MapError(f"cannot write map {out}: {e.strerror or e}"
                       f"{f' (the disk is full: {free / 1e6:.1f} MB free)' if full and free is not None else ''}; "
                       f"{out} is unchanged") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _sweep_stale(out: Path) -> None:
    """Remove the temp folders that killed writes of ``out`` left beside it (their process is gone)."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(d: Path) -> None:
    for f in d.iterdir():
        if f.is_file():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(d)


_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths atomically (Linux >= 3.15)


def _exchange(a: Path, b: Path) -> None:
    """Swap the folders ``a`` and ``b`` in one step (Linux renameat2 RENAME_EXCHANGE). Where the system has no such
    call, two renames: the old map is parked beside the target, and a kill between them leaves it there, which
    :func:`load_map` then names."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a C library without the call
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # a real failure, not a missing feature
            raise OSError(err, os.strerror(err))
    parked = b.parent / f".{b.name}.old-{os.getpid()}"
    os.rename(b, parked)
    os.rename(a, b)
    os.rename(parked, a)


def update_meta(path: str | Path, section: str, value) -> dict:
    """Set one top-level section of a complete map's ``map.yaml`` (e.g. the parameters fitted by ``visloc tune``),
    atomically: a temp file beside it, fsync, rename. The arrays are not touched. Returns the new metadata."""
    m = load_map(path)
    meta = dict(m.meta)
    meta[section] = value
    tmp = m.path / f".{MAP_YAML}.tmp-{os.getpid()}"
    try:
        _write_yaml(tmp, meta)
        os.replace(tmp, m.path / MAP_YAML)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MapError(f"cannot update {m.path / MAP_YAML}: {e.strerror or e}") from None
    return meta


def replace_keypoints(path: str | Path, keypoints: KeypointArrays, section: dict) -> None:
    """Give a complete map new keypoint arrays: ``map.yaml``'s ``keypoints`` section is dropped first (the map reads
    as one without them meanwhile), the arrays written, the new ``section`` set last."""
    m = load_map(path)
    if len(keypoints) != len(m):
        raise MapError(f"refusing to write an inconsistent map: {len(m)} places, {len(keypoints)} keypoint sets")
    if m.meta.get("keypoints"):
        update_meta(m.path, "keypoints", None)
    keypoints.save(m.path)
    update_meta(m.path, "keypoints", section)


# map.yaml's sections that are mappings when present
_SECTIONS = ("encoder", "cnn", "som", "datum", "keypoints", "pose_model", "regional", "local", "appearance",
             "sequence", "single", "calibration")


def load_map(path: str | Path, mmap: bool = True) -> MapData:
    """Load and check a map folder; every problem is a one-line :class:`MapError`."""
    p = Path(path)
    if not p.exists():
        parked = sorted(p.absolute().parent.glob(f".{p.name}.old-*")) if p.absolute().parent.is_dir() else []
        raise MapError(f"map folder {p} does not exist" + (f"; an interrupted write left the previous map at {parked[0]}: "
                                                          f"rename it back" if parked else ""))
    if not p.is_dir():
        raise MapError(f"{p} is not a folder (a map is a folder made by `visloc build-map`)")
    if not (p / MAP_YAML).is_file():
        raise MapError(f"{p} is not a complete map (no {MAP_YAML}): its write was interrupted or it is not a map; "
                       f"rebuild it with `visloc build-map`")
    try:
        meta = yaml.safe_load((p / MAP_YAML).read_text())
    except yaml.YAMLError as e:
        raise MapError(f"{p / MAP_YAML} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise MapError(f"{p / MAP_YAML} has no format_version: not a visloc_ros map")
    v = meta["format_version"]
    if not isinstance(v, int) or isinstance(v, bool):
        raise MapError(f"{p / MAP_YAML} has format_version {v!r}, not a version number: not a visloc_ros map")
    bad = [k for k in _SECTIONS if meta.get(k) is not None and not isinstance(meta[k], dict)]
    if bad:
        raise MapError(f"{p / MAP_YAML} is malformed: {', '.join(bad)} should be a mapping, not "
                       f"{', '.join(type(meta[k]).__name__ for k in bad)}; rebuild the map")
    if v > FORMAT_VERSION:
        raise MapError(f"{p} has map format version {v}, newer than this visloc_ros reads ({FORMAT_VERSION}); "
                       f"upgrade visloc_ros or rebuild the map")
    try:
        return _load_checked(p, meta, mmap)
    except (TypeError, AttributeError, KeyError, IndexError) as e:  # map.yaml fields of the wrong type
        raise MapError(f"{p / MAP_YAML} is malformed ({type(e).__name__}: {e}); rebuild the map") from None


def _load_checked(p: Path, meta: dict, mmap: bool) -> MapData:
    required = [PLACES_DB, DESCRIPTORS, LATENTS, CODEBOOK, meta.get("encoder", {}).get("file", "encoder.onnx")]
    if meta.get("regional"):  # the build's weight for it is in use until `visloc tune` fits one
        required.append(REGIONAL)
    if meta.get("local"):
        required.append(LOCAL)
    if meta.get("keypoints"):
        required.extend(KEYPOINT_FILES)
    if (meta.get("cnn") or {}).get("layout") == LAYOUT_GLOBAL:  # a user's network, kept in the map
        required.append(meta["cnn"].get("file", MAP_CNN_FILE))
    missing = [f for f in required if not (p / f).is_file()]
    if missing:
        raise MapError(f"map {p} is incomplete: missing {', '.join(missing)}; rebuild it with `visloc build-map`")
    try:
        desc = np.load(p / DESCRIPTORS, mmap_mode="r" if mmap else None)
        lat = np.load(p / LATENTS, mmap_mode="r" if mmap else None)
        cb = np.load(p / CODEBOOK)
        app, reg, loc = (np.load(p / f, mmap_mode="r" if mmap else None) if (p / f).is_file() else None
                         for f in (APPEARANCE, REGIONAL, LOCAL))
        kp = (KeypointArrays(*(np.load(p / f, mmap_mode="r" if mmap else None) for f in KEYPOINT_FILES))
              if meta.get("keypoints") else None)
    except (ValueError, OSError, EOFError) as e:
        raise MapError(f"map {p} has an unreadable array file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    places = _read_places(p / PLACES_DB)
    n = meta.get("n_places")
    if not (len(places) == len(desc) == len(lat) == n):
        raise MapError(f"map {p} is inconsistent: map.yaml says {n} places, places.sqlite has {len(places)}, "
                       f"descriptors {len(desc)}, latents {len(lat)}; rebuild it")
    if app is not None and app.shape != (n, APPEARANCE_DIM):
        raise MapError(f"map {p} has {APPEARANCE} of shape {app.shape}, expected ({n}, {APPEARANCE_DIM}); rebuild it")
    if reg is not None and reg.shape != (n, REGIONAL_DIM):
        raise MapError(f"map {p} has {REGIONAL} of shape {reg.shape}, expected ({n}, {REGIONAL_DIM}); rebuild it")
    if loc is not None and (loc.ndim != 3 or loc.shape[0] != n or loc.shape[2] != LOCAL_CHANNELS):
        raise MapError(f"map {p} has {LOCAL} of shape {loc.shape}, expected ({n}, positions, {LOCAL_CHANNELS}); "
                       f"rebuild it")
    if kp is not None and not (kp.xy.ndim == 3 and kp.xy.shape[0] == n and kp.xy.shape[2] == 2
                               and kp.desc.shape[:2] == kp.xy.shape[:2] and kp.score.shape == kp.xy.shape[:2]):
        raise MapError(f"map {p} has keypoint arrays of shapes {kp.xy.shape}, {kp.desc.shape}, {kp.score.shape}, "
                       f"expected ({n}, K, 2), ({n}, K, D), ({n}, K); rebuild them with `visloc map keypoints {p}`")
    if n == 0:
        raise MapError(f"map {p} has no places")
    return MapData(p, meta, places, desc, lat, cb, app, reg, loc, kp)
