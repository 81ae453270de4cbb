"""``visloc localize``: localize every image of a CSV against a map; one prediction row per image."""
from __future__ import annotations

import argparse
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..core.config import FILTER_KINDS
from .common import add_config_args, config_from, progress_factory, read_odometry

log = logging.getLogger("visloc")


def add_parser(sub) -> None:
    p = sub.add_parser("localize", help="localize the images of a CSV against a map",
                       description="Writes image,x,y,z,yaw,lat,lon,cov_xx,cov_xy,cov_yy,score,latency_ms per query "
                                   "(x/y/cov in the map frame; lat/lon empty for maps without a datum).")
    p.add_argument("--map", required=True, metavar="MAPDIR")
    p.add_argument("--images-csv", required=True, metavar="CSV", help="queries (only the 'image' column is needed)")
    p.add_argument("--out", required=True, metavar="PRED.csv")
    p.add_argument("--sequence", action="store_true",
                   help="treat the rows as one ordered camera stream (temporal filter across frames)")
    p.add_argument("--odometry-csv", metavar="CSV",
                   help="with --sequence: wheel odometry per image (columns image, x, y, yaw in the odom frame; "
                        "e.g. a recorded run's odometry.csv) to drive the filter")
    p.add_argument("--filter", choices=FILTER_KINDS,
                   help="with --sequence: one filter for every frame (default: the map's choice; untuned: places "
                        "without odometry, particles with it); places = a deterministic histogram filter over the "
                        "map's places")
    p.add_argument("--seed", type=int, default=0,
                   help="with --sequence: the particle filter's random seed (default 0); figures move by several "
                        "points from one seed to the next on hard streams, so report more than one")
    p.add_argument("--fast", action="store_true",
                   help="single images: write the fast fix only (default on maps with learned keypoints: the verified "
                        "fix, the fast one's candidates checked by keypoint matches; its latency includes both)")
    add_config_args(p)
    p.set_defaults(func=run)


def _read_queries(path: str) -> tuple[list[str], object]:
    from pathlib import Path

    from ..core.dataset import read_table
    from ..core.errors import DatasetError

    cols, rows = read_table(path)
    if "image" not in cols:
        raise DatasetError(f"{path} has no 'image' column")
    if not rows:
        raise DatasetError(f"{path} has no rows")
    return [r["image"] for r in rows], Path(path).parent


def _fmt(v: float, nd: int = 4) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.{nd}f}"


def run(args: argparse.Namespace) -> int:
    from ..core.errors import DatasetError, ImageError
    from ..core.localizer import Localizer
    from ..core.metrics import write_predictions
    from ..core.preprocess import load_image

    images, root = _read_queries(args.images_csv)
    cfg = config_from(args, map_path=args.map)
    loc = Localizer(args.map, cfg)
    log.info("map %s: %d places; backend %s", args.map, len(loc.map), loc.backend_name)
    seq, odo = None, {}
    if args.odometry_csv and not args.sequence:
        raise DatasetError("--odometry-csv drives the sequence filter: add --sequence")
    if args.sequence:
        from ..core.filter_params import FilterParams, fit_summary
        from ..core.temporal import make_filter
        seq = make_filter(loc, FilterParams.for_map(loc.map.meta, seed=args.seed), kind=args.filter)
        log.info("sequence filter: %s", fit_summary(loc.map.meta, args.filter))
        if args.odometry_csv:
            odo = read_odometry(args.odometry_csv)
            if not any(name in odo for name in images):
                raise DatasetError(f"no image of {args.images_csv} has a row in {args.odometry_csv}")

    def load(name):
        try:
            return load_image(root / name), None
        except ImageError as e:
            return None, e

    verified = seq is None and not args.fast and loc.verifies_keypoints
    log.info("single images: the %s fix", "verified" if verified else "fast")
    rows, failed = [], 0
    factory = progress_factory(args)
    bar = factory(total=len(images), desc="localizing images") if factory else None
    t_start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:  # decode the next image while the CNN runs
        futures = [pool.submit(load, images[0])]
        for i, name in enumerate(images):
            if i + 1 < len(images):
                futures.append(pool.submit(load, images[i + 1]))
            rgb, err = futures[i].result()
            futures[i] = None
            row = {"image": name}
            if err is not None:
                failed += 1
                log.warning("skipped: %s", err)
            else:
                t0 = time.perf_counter()
                if seq is not None:
                    fix = seq.update(rgb, odom_pose=odo.get(name))
                elif verified:
                    fix = loc.verify_fix(rgb, loc.localize(rgb))
                else:
                    fix = loc.localize(rgb)
                lat_ms = (time.perf_counter() - t0) * 1e3
                if fix.ok:
                    row.update(x=_fmt(fix.xyz[0]), y=_fmt(fix.xyz[1]), z=_fmt(fix.xyz[2]), yaw=_fmt(fix.yaw),
                               lat=_fmt(fix.lat, 8), lon=_fmt(fix.lon, 8), cov_xx=_fmt(fix.cov2[0, 0], 6),
                               cov_xy=_fmt(fix.cov2[0, 1], 6), cov_yy=_fmt(fix.cov2[1, 1], 6))
                row.update(score=_fmt(fix.score), latency_ms=_fmt(lat_ms, 3))
            rows.append(row)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    wall = time.perf_counter() - t_start
    if failed == len(images):
        raise DatasetError(f"none of the {len(images)} query images could be read")
    write_predictions(args.out, rows)
    lat = np.array([float(r["latency_ms"]) for r in rows if r.get("latency_ms")])
    print(f"wrote {args.out}: {len(rows)} rows ({failed} unreadable), image-to-pose p50 {np.percentile(lat, 50):.1f} ms, "
          f"{len(rows) / wall:.1f} images/s end to end (backend {loc.backend_name}; "
          f"{'verified' if verified else 'sequence' if seq is not None else 'fast'} fix)")
    loc.close()
    return 0
