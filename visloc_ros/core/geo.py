"""WGS84 latitude/longitude/altitude <-> a local ENU map frame (x = east, y = north, z = up).

Exact conversion through ECEF, so it stays right over a campus or a whole city; the datum (ENU origin)
is stored in the map's ``map.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_A = 6378137.0  # WGS84 semi-major axis, metres
_F = 1.0 / 298.257223563
_E2 = _F * (2.0 - _F)


@dataclass(frozen=True)
class Datum:
    """Origin of the local ENU frame."""

    lat: float
    lon: float
    alt: float = 0.0


def geodetic_to_ecef(lat, lon, alt) -> np.ndarray:
    """Degrees, degrees, metres (arrays allowed) -> (..., 3) ECEF metres."""
    lat_r, lon_r = np.radians(lat), np.radians(lon)
    sin_lat = np.sin(lat_r)
    n = _A / np.sqrt(1.0 - _E2 * sin_lat**2)
    x = (n + alt) * np.cos(lat_r) * np.cos(lon_r)
    y = (n + alt) * np.cos(lat_r) * np.sin(lon_r)
    z = (n * (1.0 - _E2) + alt) * sin_lat
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def ecef_to_geodetic(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3) ECEF metres -> lat, lon (degrees), alt (metres); Bowring's iteration, < 1 mm."""
    xyz = np.asarray(xyz, dtype=float)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    lon = np.arctan2(y, x)
    p = np.hypot(x, y)
    lat = np.arctan2(z, p * (1.0 - _E2))
    for _ in range(5):
        n = _A / np.sqrt(1.0 - _E2 * np.sin(lat) ** 2)
        alt = p / np.cos(lat) - n
        lat = np.arctan2(z, p * (1.0 - _E2 * n / (n + alt)))
    n = _A / np.sqrt(1.0 - _E2 * np.sin(lat) ** 2)
    alt = p / np.cos(lat) - n
    return np.degrees(lat), np.degrees(lon), alt


def _enu_rotation(datum: Datum) -> np.ndarray:
    lat, lon = np.radians(datum.lat), np.radians(datum.lon)
    sl, cl, so, co = np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)
    return np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])


def geodetic_to_enu(lat, lon, alt, datum: Datum) -> np.ndarray:
    """Degrees, degrees, metres -> (..., 3) east, north, up metres around ``datum``."""
    d = geodetic_to_ecef(lat, lon, alt) - geodetic_to_ecef(datum.lat, datum.lon, datum.alt)
    return d @ _enu_rotation(datum).T


def enu_to_geodetic(enu: np.ndarray, datum: Datum) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3) east, north, up metres around ``datum`` -> lat, lon (degrees), alt (metres)."""
    ecef = np.asarray(enu, dtype=float) @ _enu_rotation(datum) + geodetic_to_ecef(datum.lat, datum.lon, datum.alt)
    return ecef_to_geodetic(ecef)


def datum_for(lat: np.ndarray, lon: np.ndarray, alt: np.ndarray | None = None) -> Datum:
    """A datum at the centre of a set of positions (mean latitude/longitude, lowest altitude)."""
    a = 0.0 if alt is None or len(alt) == 0 else float(np.nanmin(alt))
    return Datum(float(np.mean(lat)), float(np.mean(lon)), a if np.isfinite(a) else 0.0)
