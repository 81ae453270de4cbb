"""``visloc tune``: fit the sequence filter to a map on a labelled run and store the fit in the map."""
from __future__ import annotations

import argparse
import logging

import numpy as np

from .common import add_config_args, config_from, progress_factory, read_odometry

log = logging.getLogger("visloc")


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="fit the sequence filter (evidence strength, covariance scale) on a labelled run",
                       description="Replays a labelled camera stream (a dataset CSV in recorded order, with true "
                                   "positions) through the sequence filter for a grid of evidence strengths, keeps "
                                   "the one with most frames within --radius, fits the covariance scale for 95%% "
                                   "ellipse coverage, and stores both in the map's map.yaml (section 'sequence'), "
                                   "where `visloc localize --sequence`, `visloc bag eval` and the node read them. "
                                   "Evaluate on other frames than the ones tuned on.")
    p.add_argument("--map", required=True, metavar="MAPDIR")
    p.add_argument("--images-csv", required=True, metavar="CSV", help="labelled stream: image + x,y or lat,lon, in order")
    p.add_argument("--radius", type=float, required=True,
                   help="a fix within this distance of the truth counts as right (map units, e.g. 25 m)")
    p.add_argument("--odometry-csv", metavar="CSV", help="wheel odometry per image (image, x, y, yaw): tunes the "
                                                         "filter as it runs with odometry")
    p.add_argument("--seeds", type=int, default=2, help="filter runs per evidence strength (default 2)")
    p.add_argument("--dry-run", action="store_true", help="print the fit, leave the map unchanged")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.dataset import read_csv
    from ..core.errors import DatasetError, ImageError
    from ..core.localizer import Localizer
    from ..core.map_db import update_meta
    from ..core.tune import tune_sequence

    if args.radius <= 0 or args.seeds < 1:
        raise DatasetError("--radius must be > 0 and --seeds >= 1")
    loc = Localizer(args.map, config_from(args, map_path=args.map))
    ds = read_csv(args.images_csv, loc.datum)
    if (loc.datum is None) != (ds.latlonalt is None):
        raise DatasetError("the map and the labelled run must both be georeferenced (lat/lon) or both in x,y")
    odo = read_odometry(args.odometry_csv) if args.odometry_csv else None
    factory = progress_factory(args)
    bar = factory(total=len(ds), desc="embedding images") if factory else None
    z, truth, odom = [], [], []
    for i in range(len(ds)):
        if bar:
            bar.update(1)
        if odo is not None and ds.images[i] not in odo:
            log.warning("skipped %s: no odometry row", ds.images[i])
            continue
        try:
            z.append(loc.embed(ds.path(i))[0])
        except ImageError as e:
            log.warning("skipped: %s", e)
            continue
        truth.append(ds.xyz[i, :2])
        if odo is not None:
            odom.append(odo[ds.images[i]])
    if bar:
        bar.close()
    fit = tune_sequence(loc, np.array(z), np.array(truth), args.radius,
                        odom=np.array(odom) if odo is not None else None, seeds=args.seeds, progress=factory)
    fit["tuned_on"] = args.images_csv
    mode = "with_odometry" if odo is not None else "without_odometry"
    print(f"{mode}: evidence {fit['evidence']:g} (within {args.radius:g}: {100 * fit['within_radius']:.1f} %, "
          f"by evidence {fit['within_radius_by_evidence']}), covariance scale {fit['cov_scale']:g} "
          f"(95 %-ellipse coverage {100 * fit['coverage_95_before']:.1f} % -> {100 * fit['coverage_95']:.1f} %) "
          f"on {fit['frames']} frames")
    if not args.dry_run:
        section = dict(loc.map.meta.get("sequence") or {})
        section[mode] = fit
        update_meta(args.map, "sequence", section)
        print(f"stored in {args.map}/map.yaml (section sequence.{mode})")
    loc.close()
    return 0
