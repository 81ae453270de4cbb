"""Synthetic place datasets for tests and the quick start: no download, deterministic from a seed.

Places lie along a closed path; each place is a procedurally drawn scene (background gradient, shapes,
stripes, text-like marks) from its own seed. Map images are the scenes as drawn; query images revisit
a subset of places with a viewpoint shift, zoom, darkening (night) and sensor noise. Written in the
CSV dataset format (``map.csv``, ``queries.csv``), local x/y or lat/lon.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from .geo import Datum, enu_to_geodetic


def draw_scene(seed: int, w: int = 320, h: int = 240) -> np.ndarray:
    """A recognisable random scene (RGB uint8) for place ``seed``."""
    rng = np.random.default_rng(seed)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    img = ((1 - t) * c0 + t * c1).astype(np.float32) * np.ones((1, w, 1), np.float32)
    img = np.ascontiguousarray(img.astype(np.uint8))
    for _ in range(int(rng.integers(6, 12))):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(15, 120)), y + int(rng.integers(15, 120))), color, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(8, 60)), color, -1)
        elif kind == 2:
            for k in range(int(rng.integers(3, 9))):
                cv2.line(img, (x + 9 * k, 0), (x + 9 * k + int(rng.integers(-40, 40)), h), color, 3)
        else:
            cv2.putText(img, "".join(rng.choice(list("ABCDEFGHKMNPRSTXZ0123456789"), 3)), (x, y),
                        cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.8, 2.0)), color, 3)
    return img


def view(scene: np.ndarray, rng: np.random.Generator, night: bool) -> np.ndarray:
    """Another visit: small shift/zoom/rotation, optional darkening, noise."""
    h, w = scene.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2 + rng.uniform(-8, 8), h / 2 + rng.uniform(-8, 8)),
                                rng.uniform(-3, 3), rng.uniform(1.0, 1.08))
    out = cv2.warpAffine(scene, m, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    if night:
        out = 255.0 * 0.35 * (out / 255.0) ** 1.8
    out += rng.normal(0, 4.0, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_dataset(out: str | Path, n_places: int = 40, n_queries: int = 20, seed: int = 0, spacing: float = 2.0,
                 datum: Datum | None = None, night_fraction: float = 0.5) -> tuple[Path, Path]:
    """Write ``map.csv``, ``queries.csv`` and their JPEGs under ``out``; returns the two CSV paths."""
    out = Path(out)
    (out / "ref").mkdir(parents=True, exist_ok=True)
    (out / "query").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    radius = n_places * spacing / (2 * np.pi)
    ang = np.arange(n_places) * 2 * np.pi / n_places
    xy = np.stack([radius * np.cos(ang), radius * np.sin(ang)], 1)
    yaw = ang + np.pi / 2
    scenes = [draw_scene(seed * 100003 + i) for i in range(n_places)]

    def rows_for(kind, idx, images):
        rows = []
        for i, name in zip(idx, images):
            r = {"image": name}
            if datum is not None:
                lat, lon, _ = enu_to_geodetic(np.array([xy[i, 0], xy[i, 1], 0.0]), datum)
                r.update(lat=f"{float(lat):.9f}", lon=f"{float(lon):.9f}")
            else:
                r.update(x=f"{xy[i, 0]:.4f}", y=f"{xy[i, 1]:.4f}")
            r.update(yaw=f"{yaw[i]:.5f}", condition=kind)
            rows.append(r)
        return rows

    map_names = []
    for i, s in enumerate(scenes):
        name = f"ref/{i:05d}.jpg"
        cv2.imwrite(str(out / name), cv2.cvtColor(s, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        map_names.append(name)
    q_idx = np.sort(rng.choice(n_places, min(n_queries, n_places), replace=False))
    q_rows = []
    for j, i in enumerate(q_idx):
        night = rng.random() < night_fraction
        name = f"query/{j:05d}.jpg"
        cv2.imwrite(str(out / name), cv2.cvtColor(view(scenes[i], rng, night), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        q_rows += rows_for("night" if night else "day", [i], [name])
    cols = ["image"] + (["lat", "lon"] if datum is not None else ["x", "y"]) + ["yaw", "condition"]
    paths = []
    for fname, rows in (("map.csv", rows_for("day", range(n_places), map_names)), ("queries.csv", q_rows)):
        with open(out / fname, "w", newline="") as fh:
            w = csv.DictWriter(fh, cols)
            w.writeheader()
            w.writerows(rows)
        paths.append(out / fname)
    return paths[0], paths[1]
