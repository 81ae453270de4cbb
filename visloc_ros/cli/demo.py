"""``visloc demo``: generate a GPS-denied world, map it in daylight, localize a night drive through it."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..sim import WORLDS


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the whole system on a generated tunnel or building, nothing to download",
                       description="Renders a mapping run (lit) and a localization run (another lane, night by "
                                   "default) through a generated world with MuJoCo, records both as rosbag2 + CSV, "
                                   "builds the map, localizes the second run from its bag (sequence filter on wheel "
                                   "odometry) and writes report.json and plots.")
    p.add_argument("--out", default="visloc_demo", metavar="DIR", help="output folder (default ./visloc_demo)")
    p.add_argument("--world", choices=WORLDS, default="tunnel",
                   help="tunnel (default), building (an office floor), wings (an office floor of two look-alike wings)")
    p.add_argument("--condition", choices=["lit", "dim", "night"], default="night",
                   help="light during the localization run (default night)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--length", type=float, default=200.0, help="tunnel length in m (default 200)")
    p.add_argument("--metric-learning", type=int, default=2, metavar="K",
                   help="degraded copies per map image for the encoder's metric term (default 2; 0 = plain autoencoder)")
    p.add_argument("--single", action="store_true", help="single-image localization instead of the sequence filter")
    p.add_argument("--live", action="store_true",
                   help="also replay the localization bag into localizer_node over DDS and score its poses")
    p.add_argument("--live-rate", type=float, default=1.0,
                   help="playback speed of the bag with --live (default 1: real time, as the robot recorded it; "
                        "faster playback drops frames on a 2-core machine)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shutil

    from ..core.errors import VislocError
    from ..sim.demo import DemoSpec, run_demo
    from .common import progress_factory

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.force:
            raise VislocError(f"{out} is not empty (use --force to replace it)")
        shutil.rmtree(out)
    spec = DemoSpec(world=args.world, seed=args.seed, condition=args.condition, tunnel_length=args.length,
                    sequence=not args.single, metric_learning=max(args.metric_learning, 0))
    r = run_demo(out, spec, live=args.live, progress=progress_factory(args), live_rate=args.live_rate)
    print(summary(r, out))
    return 0


def summary(r: dict, out) -> str:
    """A README-ready summary of a demo report."""
    mode = "sequence filter + wheel odometry" if r["sequence"] else "single images"
    lines = [f"\n## visloc demo: {r['world']}, localization run at {r['condition']} ({mode})", "",
             f"map: {r['map_places']} places every {r['map_spacing_m']:.2f} m from a lit mapping run; "
             f"{r['localization_frames']} frames localized on {r['backend']}", "",
             "| metric | value |", "|---|---|",
             f"| median error | {r['median_error_m']:.2f} m |",
             f"| frames within 2 m | {100 * r['within_2m']:.1f} % |",
             f"| frames within 5 m | {100 * r['within_5m']:.1f} % |",
             f"| 95 %-ellipse coverage | {100 * r['coverage_95']:.1f} % |",
             f"| image-to-pose latency p50 | {r['p50_latency_ms']:.1f} ms |"]
    if "live" in r:
        lv = r["live"]
        lines.append(f"| live over DDS (localizer_node, bag at {lv['rate']:g}x): poses / images | {lv['poses_received']} / "
                     f"{lv['images_played']}, median error {lv['median_error_m']:.2f} m, within 2 m "
                     f"{100 * lv['within_2m']:.1f} %, coverage {100 * lv['coverage_95']:.1f} % |")
        if lv.get("verified_received"):
            lines.append(f"| live: verified single-image fixes (keypoints, /visloc/pose_verified) | "
                         f"{lv['verified_received']} of {lv['images_played']} images, median error "
                         f"{lv['verified_median_error_m']:.2f} m, within 2 m {100 * lv['verified_within_2m']:.1f} %, "
                         f"coverage {100 * lv['verified_coverage_95']:.1f} % |")
    t = r["timings"]
    lines += ["", f"time: generate {t['generate_s']:.0f} s, build map {t['build_map_s']:.0f} s, localize "
                  f"{t['localize_s']:.0f} s, total {t['total_s']:.0f} s",
              f"report: {Path(out) / 'report.json'}; plots: {', '.join(Path(p).name for p in r['plots'])}"]
    return "\n".join(lines)

