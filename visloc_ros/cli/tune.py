"""``visloc tune``: fit a map's fusion weights, covariance and sequence filter on a labelled run; store the fit."""
from __future__ import annotations

import argparse
import logging

import numpy as np

from .common import add_config_args, config_from, progress_factory, read_odometry

log = logging.getLogger("visloc")


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="fit the fusion weights, covariance and sequence filter on a labelled run",
                       description="Localizes a labelled run (a dataset CSV in recorded order, with true positions) "
                                   "image by image for a grid of appearance weights (thumbnails), regional weights "
                                   "(the CNN's regional descriptor) and vote temperatures, keeps the setting with "
                                   "most images within --radius and refits the single-image covariance "
                                   "(map.yaml section 'single'); then replays the run through the sequence filter "
                                   "with those weights for a grid of evidence strengths, keeps the best and fits its "
                                   "covariance scale for 95%% ellipse coverage (section 'sequence'). "
                                   "`visloc localize`, `visloc bag eval` and the node read both. "
                                   "Evaluate on other frames than the ones tuned on. Without a labelled run, "
                                   "--self redoes what the map build does: the sequence filter's covariance scale "
                                   "from the map's own images.")
    p.add_argument("--map", required=True, metavar="MAPDIR")
    p.add_argument("--images-csv", metavar="CSV", help="labelled stream: image + x,y or lat,lon, in order (required "
                                                       "unless --self)")
    p.add_argument("--radius", type=float,
                   help="a fix within this distance of the truth counts as right (map units, e.g. 25 m; required "
                        "unless --self)")
    p.add_argument("--self", dest="self_", action="store_true",
                   help="no labelled run: the covariance scale of the filter without odometry from the map's own "
                        "images, each left out in turn (as `visloc build-map` does; for maps built before it)")
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
    from ..core.tune import tune_sequence, tune_single

    if args.self_:
        return run_self(args)
    if args.images_csv is None or args.radius is None:
        raise DatasetError("visloc tune needs --images-csv and --radius (a labelled run), or --self")
    if args.radius <= 0 or args.seeds < 1:
        raise DatasetError("--radius must be > 0 and --seeds >= 1")
    loc = Localizer(args.map, config_from(args, map_path=args.map))
    ds = read_csv(args.images_csv, loc.datum)
    if (loc.datum is None) != (ds.latlonalt is None):
        raise DatasetError("the map and the labelled run must both be georeferenced (lat/lon) or both in x,y")
    odo = read_odometry(args.odometry_csv) if args.odometry_csv else None
    factory = progress_factory(args)
    bar = factory(total=len(ds), desc="embedding images") if factory else None
    frames, truth, odom = [], [], []
    for i in range(len(ds)):
        if bar:
            bar.update(1)
        if odo is not None and ds.images[i] not in odo:
            log.warning("skipped %s: no odometry row", ds.images[i])
            continue
        try:
            frames.append(loc.embed(ds.path(i)))
        except ImageError as e:
            log.warning("skipped: %s", e)
            continue
        truth.append(ds.xyz[i, :2])
        if odo is not None:
            odom.append(odo[ds.images[i]])
    if bar:
        bar.close()
    truth = np.array(truth)
    single = tune_single(loc, frames, truth, args.radius, progress=factory)
    single["tuned_on"] = args.images_csv
    print(f"single images: appearance weight {single['appearance_weight']:g}, regional weight "
          f"{single['regional_weight']:g}, vote temperature {single['temperature']:g} (within {args.radius:g}: "
          f"{100 * single['within_radius']:.1f} %, by appearance weight {single['within_radius_by_weight']}, by "
          f"regional weight {single['within_radius_by_regional_weight']}, by temperature "
          f"{single['within_radius_by_temperature']}), pose averaging {single['refine_spacings']:g} spacings (by "
          f"averaging {single['within_radius_by_refine']}), verification weight {single['local_weight']:g} (by weight "
          f"{single['within_radius_by_local_weight']}), covariance "
          f"factor {single['alpha']:g} (95 %-ellipse coverage {100 * single['coverage_95_before']:.1f} % -> "
          f"{100 * single['coverage_95']:.1f} %)")
    # the sequence filter is tuned with the chosen weights
    loc.appearance_weight, loc.regional_weight, loc.local_weight = (single["appearance_weight"], single["regional_weight"],
                                                                    single["local_weight"])
    fit = tune_sequence(loc, frames, truth, args.radius,
                        odom=np.array(odom) if odo is not None else None, seeds=args.seeds, progress=factory)
    fit["tuned_on"] = args.images_csv
    mode = "with_odometry" if odo is not None else "without_odometry"
    print(f"{mode}: {fit['filter']} filter, evidence {fit['evidence']:g} (within {args.radius:g}: {100 * fit['within_radius']:.1f} %, "
          f"by evidence {fit['within_radius_by_evidence']}), covariance scale {fit['cov_scale']:g} "
          f"(95 %-ellipse coverage {100 * fit['coverage_95_before']:.1f} % -> {100 * fit['coverage_95']:.1f} %) "
          f"on {fit['frames']} frames" + "".join(f"; {k}: within {args.radius:g} {100 * v['within_radius']:.1f} %"
                                                 for k, v in fit["by_filter"].items() if k != fit["filter"]))
    if not args.dry_run:
        update_meta(args.map, "single", single)
        section = dict(loc.map.meta.get("sequence") or {})
        section[mode] = fit
        update_meta(args.map, "sequence", section)
        print(f"stored in {args.map}/map.yaml (sections single and sequence.{mode})")
    loc.close()
    return 0


def run_self(args: argparse.Namespace) -> int:
    from ..core.build import self_calibrate
    from ..core.errors import DatasetError

    if args.images_csv or args.radius is not None or args.odometry_csv:
        raise DatasetError("--self takes no labelled run (--images-csv, --radius, --odometry-csv)")
    fit = self_calibrate(args.map, config_from(args, map_path=args.map), progress_factory(args),
                         store=not args.dry_run)
    if "skipped" in fit:
        print(f"without_odometry: not calibrated ({fit['skipped']}); covariance scale {fit['cov_scale']:g}")
    else:
        print(f"without_odometry (self-calibration on {fit['frames']} map images): particles ({fit['seeds']} seeds) "
              f"covariance scale {fit['cov_scale']:g} (fitted {fit['fitted_scale']:g}, never below 1; 95 %-ellipse "
              f"coverage {100 * fit['coverage_95_before']:.1f} % -> {100 * fit['coverage_95']:.1f} %, median error "
              f"{fit['median_error']:g}); places covariance scale {fit['cov_scale_places']:g} (fitted "
              f"{fit['fitted_scale_places']:g})")
    if not args.dry_run:
        print(f"stored in {args.map}/map.yaml (section sequence.without_odometry)")
    return 0
