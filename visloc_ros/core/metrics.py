"""Localization metrics: position errors, top-1 recall at radii, 95 %-ellipse coverage, latency.

Predictions and truths are joined on ``image``. Georeferenced truths (lat/lon) are compared in a local
ENU frame around the truths' centre; others in their own x/y. A withheld fix (empty x) counts as a miss.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import Dataset, read_csv, read_table
from .errors import DatasetError
from .geo import datum_for, geodetic_to_enu
from .pose import CHI2_2D_95

PRED_COLUMNS = ["image", "x", "y", "z", "yaw", "lat", "lon", "cov_xx", "cov_xy", "cov_yy", "score", "latency_ms"]


@dataclass
class Predictions:
    images: list[str]
    xy: np.ndarray          # (N, 2), nan where withheld
    latlon: np.ndarray      # (N, 2), nan where not georeferenced or withheld
    cov2: np.ndarray        # (N, 2, 2)
    score: np.ndarray
    latency_ms: np.ndarray
    yaw: np.ndarray | None = None  # (N,) radians, nan where not given


def read_predictions(path: str | Path) -> Predictions:
    p = Path(path)
    cols, rows = read_table(p)
    missing = [c for c in PRED_COLUMNS if c not in cols]
    if missing:
        raise DatasetError(f"{p} is not a prediction file: missing column(s) {', '.join(missing)}")
    if not rows:
        raise DatasetError(f"{p} has no predictions")

    def col(name):
        try:
            return np.array([float(r[name]) if r[name].strip() else np.nan for r in rows])
        except ValueError:
            raise DatasetError(f"{p}: column '{name}' holds a non-number") from None

    cov = np.zeros((len(rows), 2, 2))
    cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1] = col("cov_xx"), col("cov_xy"), col("cov_yy")
    cov[:, 1, 0] = cov[:, 0, 1]
    return Predictions([r["image"] for r in rows], np.stack([col("x"), col("y")], 1),
                       np.stack([col("lat"), col("lon")], 1), cov, col("score"), col("latency_ms"), col("yaw"))


def write_predictions(path: str | Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, PRED_COLUMNS)
        w.writeheader()
        w.writerows(rows)


@dataclass
class Matched:
    """Predictions aligned with their truths, in one metric frame."""

    images: list[str]
    est: np.ndarray     # (N, 2), nan = withheld
    truth: np.ndarray   # (N, 2)
    cov2: np.ndarray
    latency_ms: np.ndarray
    condition: list[str] | None
    frame: str          # 'enu' (around ``datum``) or 'map'
    datum: object = None
    yaw_error: np.ndarray | None = None  # (N,) |estimated - true yaw| (rad) where both are known, else nan


def match(pred: Predictions, truth: Dataset) -> Matched:
    """Join on image name; express both in one frame."""
    pos = {name: i for i, name in enumerate(pred.images)}
    idx = [pos.get(name, -1) for name in truth.images]
    if all(i < 0 for i in idx):
        raise DatasetError("no prediction matches a truth row by 'image': are these files about the same images?")
    idx = np.array(idx)
    have = idx >= 0
    n = len(truth)
    est = np.full((n, 2), np.nan)
    cov = np.tile(np.eye(2), (n, 1, 1))
    lat = np.full(n, np.nan)
    if truth.georeferenced:
        if np.isnan(pred.latlon[idx[have]]).all() and not np.isnan(pred.xy[idx[have]]).all():
            raise DatasetError("the truth has lat/lon but the predictions have none (non-georeferenced map?)")
        lla = truth.latlonalt
        datum = datum_for(lla[:, 0], lla[:, 1])
        t = geodetic_to_enu(lla[:, 0], lla[:, 1], 0.0, datum)[:, :2]
        ll = pred.latlon[idx[have]]
        est[have] = geodetic_to_enu(ll[:, 0], ll[:, 1], 0.0, datum)[:, :2]
        frame = "enu"
    else:
        datum = None
        t = truth.xyz[:, :2]
        est[have] = pred.xy[idx[have]]
        frame = "map"
    cov[have] = pred.cov2[idx[have]]
    lat[have] = pred.latency_ms[idx[have]]
    yaw_err = None
    if truth.quat is not None and pred.yaw is not None:
        from .pose import yaw_from_quat

        est_yaw = np.full(n, np.nan)
        est_yaw[have] = pred.yaw[idx[have]]
        d = est_yaw - yaw_from_quat(truth.quat)
        yaw_err = np.abs(np.arctan2(np.sin(d), np.cos(d)))
    return Matched(truth.images, est, t, cov, lat, truth.condition, frame, datum, yaw_err)


def summarize(m: Matched, radii: list[float], sel: np.ndarray | None = None) -> dict:
    """Metrics over the selected rows (all by default)."""
    sel = np.ones(len(m.images), bool) if sel is None else sel
    est, truth, cov = m.est[sel], m.truth[sel], m.cov2[sel]
    answered = ~np.isnan(est).any(1)
    err = np.linalg.norm(est - truth, axis=1)
    e = err[answered]
    out = {"n": int(sel.sum()), "answered": int(answered.sum())}
    if e.size:
        out.update(median_error=float(np.median(e)), mean_error=float(np.mean(e)), p90_error=float(np.percentile(e, 90)))
    for r in radii:
        out[f"within_{r:g}"] = float(np.mean(answered & (np.nan_to_num(err, nan=np.inf) <= r)))
    if e.size:
        d = est[answered] - truth[answered]
        c = cov[answered]
        ok = np.linalg.det(c) > 0
        d2 = np.full(len(d), np.inf)
        d2[ok] = np.einsum("ni,nij,nj->n", d[ok], np.linalg.inv(c[ok]), d[ok])
        out["coverage_95"] = float(np.mean(d2 <= CHI2_2D_95))
        out["median_sigma"] = float(np.median(np.sqrt(np.trace(c, axis1=1, axis2=2) / 2)))
    if m.yaw_error is not None and np.isfinite(m.yaw_error[sel]).any():
        ye = np.degrees(m.yaw_error[sel][np.isfinite(m.yaw_error[sel])])
        out["yaw_error_deg"] = {"median": float(np.median(ye)), "p90": float(np.percentile(ye, 90)), "n": int(ye.size)}
    lat = m.latency_ms[sel]
    lat = lat[np.isfinite(lat)]
    if lat.size:
        out["latency_ms"] = {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                             "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean())}
    return out


def evaluate(pred_path: str | Path, truth_path: str | Path, radii: list[float]) -> tuple[dict, Matched]:
    """Full report: overall and per condition."""
    m = match(read_predictions(pred_path), read_csv(truth_path))
    report = {"pred": str(pred_path), "truth": str(truth_path), "frame": m.frame, "radii": radii,
              "overall": summarize(m, radii)}
    if m.condition:
        conds = np.array(m.condition)
        report["by_condition"] = {c: summarize(m, radii, conds == c) for c in sorted(set(m.condition))}
    return report, m
