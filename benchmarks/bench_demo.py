#!/usr/bin/env python3
"""Stage costs and single-image vs sequence accuracy on a `visloc demo` output folder.

Replays the localization run's bag through the Localizer; each frame's latent goes both to a single-image lookup
(top-1 place within 2 m) and to the sequence filter on the bag's wheel odometry; prints per-stage p50/p99 (ms),
the filter's own cost included.

    python benchmarks/bench_demo.py visloc_demo [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from visloc_ros.core.config import FILTER_KINDS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo_dir")
    ap.add_argument("--seed", type=int, default=0, help="the particle filter's random seed (default 0)")
    ap.add_argument("--filter", choices=FILTER_KINDS,
                    help="the sequence filter (default: the map's choice)")
    ap.add_argument("--no-odometry", action="store_true",
                    help="leave the bag's wheel odometry out: a camera-only robot")
    ap.add_argument("--json")
    a = ap.parse_args()
    from visloc_ros.core.config import LocalizerConfig
    from visloc_ros.core.localizer import Localizer
    from visloc_ros.core.pose import yaw_from_quat
    from visloc_ros.core.filter_params import FilterParams
    from visloc_ros.core.temporal import make_filter
    from visloc_ros.tools.bag import GT_TOPIC, IMAGE_TOPIC, ODOM_TOPIC, image_stream, nearest, pose_track
    from visloc_ros.tools.replay import score

    d = Path(a.demo_dir)
    bag = d / "localization_run" / "bag"
    loc = Localizer(d / "map", LocalizerConfig(map_path=str(d / "map")))
    gt_t, gt_p, _ = pose_track(bag, GT_TOPIC)
    od_t, od_p, od_q = pose_track(bag, ODOM_TOPIC)
    od = np.column_stack([od_p[:, :2], yaw_from_quat(od_q)])
    seq = make_filter(loc, FilterParams.for_map(loc.map.meta, seed=a.seed), kind=a.filter)
    places = loc.map.places.xyz[:, :2]
    stages, top1, est, cov, truth = defaultdict(list), [], [], [], []
    for t, rgb in image_stream(bag, IMAGE_TOPIC):
        g = gt_p[nearest(gt_t, t, 50_000_000), :2]
        emb = loc.embed(rgb)  # one CNN pass per frame serves both modes
        single = loc.localize_embedding(replace(emb, timings_ms={}))
        top1.append(np.linalg.norm(places[single.best_id] - g) <= 2.0)
        k = None if a.no_odometry else nearest(od_t, t, 100_000_000)
        fix = seq.update_embedding(emb, odom_pose=None if k is None else od[k])
        for name, ms in fix.timings_ms.items():
            stages[name].append(ms)
        stages["total"].append(fix.latency_ms)
        est.append(fix.xyz)
        cov.append(fix.cov2)
        truth.append(g)
    m = score(np.array(est), np.array(cov), np.ones(len(est), bool), np.array(truth))
    rep = {"frames": len(top1), "single_top1_within_2m": float(np.mean(top1)),
           "sequence": {k: m[k] for k in ("median_error_m", "within_2m", "coverage_95")},
           "stages_ms": {k: {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
                         for k, v in stages.items()}}
    print(f"{rep['frames']} frames: single images, best place within 2 m {100 * rep['single_top1_within_2m']:.1f} %; "
          f"sequence filter median {m['median_error_m']:.2f} m, within 2 m {100 * m['within_2m']:.1f} %, "
          f"coverage {100 * m['coverage_95']:.1f} %")
    for k, v in rep["stages_ms"].items():
        print(f"  {k:10s} p50 {v['p50']:6.2f} ms  p99 {v['p99']:6.2f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
