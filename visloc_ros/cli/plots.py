"""Evaluation plots (matplotlib, headless): trajectory/places with error lines, and the error CDF."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_eval(m, out: Path, places=None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from ..core.geo import geodetic_to_enu

    ok = ~np.isnan(m.est).any(1)
    fig, ax = plt.subplots(figsize=(8, 7))
    if places is not None:
        if m.frame == "enu" and places.latlonalt is not None:  # the truths' ENU frame
            pxy = geodetic_to_enu(places.latlonalt[:, 0], places.latlonalt[:, 1], 0.0, m.datum)[:, :2]
        else:
            pxy = places.xyz[:, :2]
        ax.scatter(pxy[:, 0], pxy[:, 1], s=6, c="0.75", label=f"map places ({len(pxy)})")
    err = np.linalg.norm(m.est - m.truth, axis=1)
    segs = np.stack([m.truth[ok], m.est[ok]], 1)
    ax.add_collection(LineCollection(segs, colors="tab:red", linewidths=0.6, alpha=0.5, label="error"))
    ax.scatter(m.truth[:, 0], m.truth[:, 1], s=10, c="tab:green", label="truth")
    sc = ax.scatter(m.est[ok, 0], m.est[ok, 1], s=10, c=err[ok], cmap="viridis", label="estimate")
    fig.colorbar(sc, ax=ax, label="error")
    ax.set_aspect("equal", adjustable="datalim")
    unit = "m" if m.frame == "enu" else "map units"
    ax.set_xlabel(f"x / east ({unit})")
    ax.set_ylabel(f"y / north ({unit})")
    ax.set_title(f"{ok.sum()} estimates of {len(ok)} queries; median error {np.median(err[ok]):.2f}" if ok.any()
                 else "no estimates")
    ax.legend(loc="best", fontsize=8)
    p1 = out / "trajectory.png"
    fig.savefig(p1, dpi=110, bbox_inches="tight")
    plt.close(fig)

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
    p2 = out / "error_cdf.png"
    fig.savefig(p2, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [p1, p2]

