"""Image datasets with positions: the CSV format of DESIGN.md, and image folders with EXIF GPS.

CSV: column ``image`` (path relative to the CSV), then ``lat,lon[,alt]`` or ``x,y[,z]``, optionally
``qx,qy,qz,qw`` (ROS order) or ``yaw`` (radians), ``stamp_ns``, ``condition``; other columns are ignored.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .geo import Datum, datum_for, geodetic_to_enu

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Dataset:
    """Images with positions; ``xyz`` is in the local metric (or index) frame."""

    root: Path                       # folder the image paths are relative to
    images: list[str]                # as written in the CSV
    xyz: np.ndarray                  # (N, 3)
    latlonalt: np.ndarray | None = None  # (N, 3) when georeferenced
    quat: np.ndarray | None = None   # (N, 4) x, y, z, w (ROS order) when known
    stamp_ns: np.ndarray | None = None   # (N,) int64 when known
    condition: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def georeferenced(self) -> bool:
        return self.latlonalt is not None

    def path(self, i: int) -> Path:
        return self.root / self.images[i]

    def subset(self, idx) -> "Dataset":
        idx = np.asarray(idx, dtype=int)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return Dataset(self.root, [self.images[i] for i in idx], self.xyz[idx], pick(self.latlonalt),
                       pick(self.quat), pick(self.stamp_ns),
                       None if self.condition is None else [self.condition[i] for i in idx])

    def to_local(self, datum: Datum) -> "Dataset":
        """Positions re-expressed in the ENU frame of ``datum`` (georeferenced datasets only)."""
        if self.latlonalt is None:
            raise DatasetError("dataset has no lat/lon to place in a georeferenced map")
        enu = geodetic_to_enu(self.latlonalt[:, 0], self.latlonalt[:, 1], self.latlonalt[:, 2], datum)
        return Dataset(self.root, self.images, enu, self.latlonalt, self.quat, self.stamp_ns, self.condition)


def _floats(rows: list[dict], col: str, csv_path: Path, default: float | None = None) -> np.ndarray:
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        v = (r.get(col) or "").strip()
        if v == "" and default is not None:
            out[i] = default
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise DatasetError(f"{csv_path}:{i + 2}: column '{col}' is not a number ({v!r})") from None
    if not np.all(np.isfinite(out)):
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise DatasetError(f"{csv_path}:{bad + 2}: column '{col}' is not finite")
    return out


def read_table(path: str | Path) -> tuple[list[str], list[dict]]:
    """Column names (stripped) and rows of a CSV file; unreadable files are a one-line DatasetError."""
    p = Path(path)
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = cols
            return cols, list(reader)
    except OSError as e:
        raise DatasetError(f"cannot read CSV {p}: {e.strerror or e}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DatasetError(f"{p} is not a readable CSV: {e}") from None


def read_csv(path: str | Path, datum: Datum | None = None) -> Dataset:
    """Read a CSV dataset. Georeferenced rows are placed in ENU around ``datum`` (default: their centre)."""
    p = Path(path)
    cols, rows = read_table(p)
    if not cols:
        raise DatasetError(f"{p} is empty (expected a header with 'image' and position columns)")
    if "image" not in cols:
        raise DatasetError(f"{p} has no 'image' column (columns: {', '.join(cols)})")
    geo = {"lat", "lon"} <= set(cols)
    if not geo and not {"x", "y"} <= set(cols):
        raise DatasetError(f"{p} has no position columns: expected 'lat,lon[,alt]' or 'x,y[,z]' "
                           f"(columns: {', '.join(cols)})")
    if not rows:
        raise DatasetError(f"{p} has a header but no rows")
    images = [(r.get("image") or "").strip() for r in rows]
    if any(not s for s in images):
        raise DatasetError(f"{p}:{images.index('') + 2}: empty 'image' value")

    latlonalt = None
    if geo:
        lat, lon = _floats(rows, "lat", p), _floats(rows, "lon", p)
        alt = _floats(rows, "alt", p, default=0.0) if "alt" in cols else np.zeros(len(rows))
        if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
            raise DatasetError(f"{p}: lat/lon out of range (are the columns swapped or in radians?)")
        latlonalt = np.stack([lat, lon, alt], 1)
        xyz = geodetic_to_enu(lat, lon, alt, datum or datum_for(lat, lon, alt))
    else:
        z = _floats(rows, "z", p, default=0.0) if "z" in cols else np.zeros(len(rows))
        xyz = np.stack([_floats(rows, "x", p), _floats(rows, "y", p), z], 1)

    quat = None
    if {"qx", "qy", "qz", "qw"} <= set(cols):
        quat = np.stack([_floats(rows, c, p) for c in ("qx", "qy", "qz", "qw")], 1)
        n = np.linalg.norm(quat, axis=1, keepdims=True)
        if np.any(n < 1e-6):
            raise DatasetError(f"{p}: a quaternion qx,qy,qz,qw has zero norm")
        quat = quat / n
    elif "yaw" in cols:
        from .pose import quat_from_yaw
        quat = quat_from_yaw(_floats(rows, "yaw", p))
    stamp = None
    if "stamp_ns" in cols:
        try:
            stamp = np.array([int(r["stamp_ns"]) for r in rows], dtype=np.int64)
        except (TypeError, ValueError):
            raise DatasetError(f"{p}: column 'stamp_ns' must hold integers") from None
    cond = [(r.get("condition") or "").strip() for r in rows] if "condition" in cols else None
    return Dataset(p.parent, images, xyz, latlonalt, quat, stamp, cond)


def _exif_gps(path: Path) -> tuple[float, float, float] | None:
    from PIL import Image  # pillow: EXIF reading only

    def deg(v) -> float:
        d, m, s = (float(x) for x in v)
        return d + m / 60.0 + s / 3600.0

    try:
        with Image.open(path) as im:
            gps = im.getexif().get_ifd(0x8825)
    except Exception:  # unreadable or no EXIF: the caller reports the file
        return None
    if not gps or 2 not in gps or 4 not in gps:
        return None
    try:  # malformed GPS (wrong counts, zero denominators, text): no position, the caller lists the file as skipped
        lat, lon = deg(gps[2]), deg(gps[4])
        alt = float(gps.get(6, 0.0))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if not (np.isfinite([lat, lon, alt]).all() and abs(lat) <= 90.0 and abs(lon) <= 180.0):
        return None
    lat = -lat if gps.get(1) in ("S", b"S") else lat
    lon = -lon if gps.get(3) in ("W", b"W") else lon
    alt = -alt if gps.get(5) in (1, b"\x01") else alt
    return lat, lon, alt


def read_image_folder(folder: str | Path, datum: Datum | None = None) -> tuple[Dataset, list[str]]:
    """Photos carrying EXIF GPS in ``folder`` -> a georeferenced Dataset, and the files skipped (no GPS)."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images in {root}")
    names, lla, skipped = [], [], []
    for f in files:
        g = _exif_gps(f)
        if g is None:
            skipped.append(str(f.relative_to(root)))
        else:
            names.append(str(f.relative_to(root)))
            lla.append(g)
    if not names:
        raise DatasetError(f"none of the {len(files)} images in {root} carries EXIF GPS")
    lla = np.array(lla)
    xyz = geodetic_to_enu(lla[:, 0], lla[:, 1], lla[:, 2], datum or datum_for(lla[:, 0], lla[:, 1], lla[:, 2]))
    return Dataset(root, names, xyz, lla), skipped
