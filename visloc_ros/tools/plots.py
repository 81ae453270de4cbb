"""Evaluation plots (matplotlib, headless): trajectory/places with error lines, and the error CDF."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_eval(m, out: Path, places=None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from ..core.geo import geodetic_to_enu

    ok = ~np.isnan(m.est).any(1)
    err = np.linalg.norm(m.est - m.truth, axis=1)
    unit = "m" if m.frame == "enu" else "map units"
    if np.ptp(m.truth[:, 1]) < 1e-9:  # a 1-D route (frame index): position along it per query
        fig, ax = plt.subplots(figsize=(9, 5))
        i = np.arange(len(ok))
        ax.plot(i, m.truth[:, 0], "-", c="tab:green", lw=1.5, label="truth")
        sc = ax.scatter(i[ok], m.est[ok, 0], s=8, c=err[ok], cmap="viridis", label="estimate")
        fig.colorbar(sc, ax=ax, label="error")
        ax.set_xlabel("query (row order)")
        ax.set_ylabel(f"position along the route, x ({unit})")
        ax.set_title(f"{ok.sum()} estimates of {len(ok)} queries; median error {np.median(err[ok]):.2f}" if ok.any()
                     else "no estimates")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        p1 = _save(fig, out / "trajectory.png")
        return [p1, _error_cdf(m, err, unit, out)]
    fig, ax = plt.subplots(figsize=(8, 7))
    if places is not None:
        if m.frame == "enu" and places.latlonalt is not None:  # the truths' ENU frame
            pxy = geodetic_to_enu(places.latlonalt[:, 0], places.latlonalt[:, 1], 0.0, m.datum)[:, :2]
        else:
            pxy = places.xyz[:, :2]
        ax.scatter(pxy[:, 0], pxy[:, 1], s=6, c="0.75", label=f"map places ({len(pxy)})")
    segs = np.stack([m.truth[ok], m.est[ok]], 1)
    ax.add_collection(LineCollection(segs, colors="tab:red", linewidths=0.6, alpha=0.5, label="error"))
    ax.scatter(m.truth[:, 0], m.truth[:, 1], s=10, c="tab:green", label="truth")
    sc = ax.scatter(m.est[ok, 0], m.est[ok, 1], s=10, c=err[ok], cmap="viridis", label="estimate")
    fig.colorbar(sc, ax=ax, label="error")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"x / east ({unit})")
    ax.set_ylabel(f"y / north ({unit})")
    ax.set_title(f"{ok.sum()} estimates of {len(ok)} queries; median error {np.median(err[ok]):.2f}" if ok.any()
                 else "no estimates")
    ax.legend(loc="best", fontsize=8)
    p1 = _save(fig, out / "trajectory.png")
    return [p1, _error_cdf(m, err, unit, out)]


def _error_cdf(m, err: np.ndarray, unit: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    ok = ~np.isnan(m.est).any(1)
    fig, ax = plt.subplots(figsize=(7, 4))
    conds = np.array(m.condition) if m.condition else np.array([""] * len(ok))
    for c in sorted(set(conds)):
        e = np.sort(np.nan_to_num(err[conds == c], nan=np.inf))
        ax.step(e, np.arange(1, len(e) + 1) / len(e), where="post", label=c or "all")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel(f"position error ({unit})")
    ax.set_ylabel("fraction of queries")
    ax.grid(alpha=0.3)
    ax.legend()
    p2 = _save(fig, out / "error_cdf.png")
    return p2



def plot_bag_eval(t_ns, est, truth, cov, ok, out: Path, places=None) -> list[Path]:
    """Trajectory with 95 % covariance ellipses, and error over time, for `visloc bag eval`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    from ..core.pose import CHI2_2D_95

    t = (np.asarray(t_ns) - t_ns[0]) / 1e9
    span = np.ptp(truth[:, :2], axis=0)
    lo, hi = truth[:, :2].min(0) - 0.1 * span.max() - 2, truth[:, :2].max(0) + 0.1 * span.max() + 2
    if span.min() < 0.1 * span.max():  # a corridor or tunnel: position along it over time, 95 % band
        k = int(np.argmax(span))
        sd = np.sqrt(np.maximum(cov[:, k, k], 0))
        fig, ax = plt.subplots(figsize=(9, 4.5))
        ax.plot(t, truth[:, k], "g-", lw=1.5, label="ground truth")
        ax.fill_between(t[ok], est[ok, k] - np.sqrt(3.84) * sd[ok], est[ok, k] + np.sqrt(3.84) * sd[ok],
                        color="tab:blue", alpha=0.2, label="95 % interval")
        ax.plot(t[ok], est[ok, k], ".", c="tab:blue", ms=3, label="estimate")
        ax.set_ylim(lo[k], hi[k])
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"{'xy'[k]} (m), along the route")
        ax.set_title("position along the route with its 95 % interval")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        p1 = _save(fig, out / "trajectory.png")
        return [p1, _error_over_time(t, est, truth, cov, ok, out)]
    fig, ax = plt.subplots(figsize=(8, 7))
    if places:
        p = np.array(places)
        ax.scatter(p[:, 0], p[:, 1], s=5, c="0.75", label="map places")
    ax.plot(truth[:, 0], truth[:, 1], "g-", lw=1.5, label="ground truth")
    ax.plot(est[ok, 0], est[ok, 1], ".", c="tab:blue", ms=4, label="estimate")
    for i in np.flatnonzero(ok)[:: max(1, int(ok.sum()) // 40)]:
        vals, vecs = np.linalg.eigh(cov[i])
        w, h = 2 * np.sqrt(CHI2_2D_95 * np.maximum(vals, 0))
        ang = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
        ax.add_patch(Ellipse(est[i, :2], h, w, angle=ang, fill=False, ec="tab:blue", alpha=0.35, lw=0.8))
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("trajectory with 95 % ellipses")
    ax.legend(fontsize=8)
    p1 = _save(fig, out / "trajectory.png")
    return [p1, _error_over_time(t, est, truth, cov, ok, out)]


def _error_over_time(t, est, truth, cov, ok, out: Path) -> Path:
    import matplotlib.pyplot as plt

    from ..core.pose import CHI2_2D_95

    err = np.linalg.norm(est[:, :2] - truth[:, :2], axis=1)
    sig = np.sqrt(np.trace(cov, axis1=1, axis2=2) / 2)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(t[ok], np.maximum(err[ok], 1e-2), label="position error")
    ax.plot(t[ok], np.sqrt(CHI2_2D_95) * sig[ok], "--", label="95 % radius (mean axis)")
    ax.axhline(2.0, c="0.6", lw=0.8, label="2 m")
    ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("m")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out / "error_over_time.png")
