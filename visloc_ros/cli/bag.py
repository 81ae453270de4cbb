"""``visloc bag``: rosbag2 tools (MCAP by default, sqlite3 on request) for machines without ``ros2 bag``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.config import FILTER_KINDS
from .common import add_config_args, config_from, progress_factory



def add_parser(sub) -> None:
    p = sub.add_parser("bag", help="rosbag2 tools: from-csv, info, play, eval")
    s = p.add_subparsers(dest="bag_command", required=True, metavar="ACTION")
    f = s.add_parser("from-csv", help="a CSV image sequence with poses -> rosbag2 (Image, CameraInfo, Imu, Odometry, "
                                      "ground truth)")
    f.add_argument("--images-csv", required=True, metavar="CSV", help="dataset CSV with x,y[,z] and ideally stamp_ns, "
                                                                      "qx,qy,qz,qw")
    f.add_argument("--out", required=True, metavar="BAG")
    f.add_argument("--imu-csv", metavar="CSV", help="EuRoC-style IMU CSV (stamp_ns, gyro xyz, accel xyz)")
    f.add_argument("--calibration", metavar="YAML", help="camera calibration (EuRoC sensor.yaml) -> CameraInfo")
    f.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    f.add_argument("--rate", type=float, default=20.0, help="frame rate when the CSV has no stamp_ns (default 20)")
    f.set_defaults(func=run_from_csv)
    i = s.add_parser("info", help="topics, types and message counts")
    i.add_argument("bag")
    i.set_defaults(func=run_info)
    pl = s.add_parser("play", help="publish a bag over DDS with its original timing")
    pl.add_argument("bag")
    pl.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    pl.add_argument("--loop", action="store_true")
    pl.add_argument("--topics", nargs="+", metavar="TOPIC", help="only these topics")
    pl.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO")
    pl.add_argument("--restamp", action="store_true", help="set header stamps to the publishing time")
    pl.add_argument("--reliable", action="store_true", help="reliable QoS (default best effort, like sensors)")
    pl.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds until every played topic has a subscriber (default: 1 s, no check)")
    pl.set_defaults(func=run_play)
    e = s.add_parser("eval", help="run the localizer over a bag offline and score it against the ground truth")
    e.add_argument("bag")
    e.add_argument("--map", required=True, metavar="MAPDIR")
    e.add_argument("--image-topic", default="/camera/image_raw")
    e.add_argument("--gt-topic", default="/ground_truth/pose")
    e.add_argument("--odom-topic", default="/odom", help="odometry driving the --sequence filter ('' = none)")
    e.add_argument("--sequence", action="store_true", help="temporal filter across frames")
    e.add_argument("--filter", choices=FILTER_KINDS,
                   help="with --sequence: one filter for every frame (default: the map's choice; untuned: places "
                        "without odometry, particles with it)")
    e.add_argument("--fast", action="store_true",
                   help="single images: the fast fix only (default on maps with learned keypoints: the verified fix)")
    e.add_argument("--out", required=True, metavar="DIR", help="metrics.json, TUM trajectories, plots")
    add_config_args(e)
    e.set_defaults(func=run_eval)


def run_from_csv(args) -> int:
    from ..tools.bag import csv_to_bag

    counts = csv_to_bag(args.images_csv, args.out, args.imu_csv, args.calibration, args.storage, args.rate,
                        progress=progress_factory(args))
    print(f"wrote {args.out} ({args.storage}): " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def run_info(args) -> int:
    from ..tools.bag import topics

    for t, (typ, n) in sorted(topics(args.bag).items()):
        print(f"{t:30s} {typ:40s} {n}")
    return 0


def run_play(args) -> int:
    from ..core.errors import VislocError
    from ..nodes.bag_player import play

    remaps = {}
    for r in args.remap:
        if ":=" not in r:
            raise VislocError(f"--remap expects FROM:=TO, got '{r}'")
        a, b = r.split(":=", 1)
        remaps[a] = b
    play(args.bag, args.rate, args.loop, remaps, args.topics, args.restamp, args.reliable,
         wait_for_subscribers=args.wait_for_subscribers)
    return 0


def write_tum(path: Path, t_ns: np.ndarray, xyz: np.ndarray, quat: np.ndarray) -> None:
    """TUM trajectory (timestamp x y z qx qy qz qw), readable by evo."""
    with open(path, "w") as fh:
        for t, p, q in zip(t_ns, xyz, quat):
            fh.write(f"{t / 1e9:.9f} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {q[0]:.6f} {q[1]:.6f} {q[2]:.6f} {q[3]:.6f}\n")


def run_eval(args) -> int:
    from ..core.localizer import Localizer
    from ..core.pose import quat_from_yaw
    from ..tools.replay import replay_bag, score
    from ..tools.plots import plot_bag_eval

    loc = Localizer(args.map, config_from(args, map_path=args.map))
    r = replay_bag(args.bag, loc, args.sequence, args.image_topic, args.gt_topic, args.odom_topic or None,
                   progress_factory(args), filter_kind=args.filter, verified=not args.fast)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"bag": str(args.bag), "map": str(args.map), "unreadable_frames": r.unreadable,
               **score(r.est, r.cov, r.ok, r.truth, r.latency_ms),
               "sequence": bool(args.sequence), "backend": loc.backend_name}
    write_tum(out / "estimate_tum.txt", r.t_ns[r.ok], r.est[r.ok], quat_from_yaw(r.yaw[r.ok]))
    write_tum(out / "groundtruth_tum.txt", r.t_ns, r.truth, r.truth_q)
    pngs = plot_bag_eval(r.t_ns, r.est, r.truth, r.cov, r.ok, out, list(loc.map.places.xyz))
    metrics["plots"] = [str(p) for p in pngs]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    m = metrics
    print(f"{m['frames']} frames, {100 * m['published']:.0f}% published: median error {m['median_error_m']:.3f}, "
          f"ATE RMSE {m['ate_rmse_m']:.3f}, within 2 m {100 * m['within_2m']:.1f}%, 95%-ellipse coverage "
          f"{100 * m['coverage_95']:.1f}%, latency p50 {m['p50_latency_ms']:.1f} ms")
    print(f"wrote {out / 'metrics.json'}, estimate_tum.txt, groundtruth_tum.txt (evo_ape tum groundtruth_tum.txt "
          f"estimate_tum.txt), {', '.join(p.name for p in pngs)}")
    return 0
