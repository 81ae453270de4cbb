"""``visloc demo``: the whole system on a generated GPS-denied world, with nothing to download.

1. generate the world (tunnel or building) and two drives through it: a mapping run (lit, slower, one lane)
   and a localization run (another lane, weaving, faster, under ``dim`` or ``night`` light);
2. record both as a robot would (rosbag2 MCAP + CSV dataset);
3. build the map from the mapping run's CSV;
4. localize the second run from its bag through the real :class:`Localizer` (sequence filter driven by the
   bag's wheel odometry) and, with ``live``, through ``localizer_node`` over DDS;
5. score against the ground truth: ``report.json``, a trajectory plot with 95 % ellipses, error over time.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .record import record
from .sensors import drive
from .worlds import make_world


@dataclass(frozen=True)
class DemoSpec:
    world: str = "tunnel"
    seed: int = 0
    condition: str = "night"        # the localization run's light
    map_hz: float = 2.0             # camera rate of the mapping run (1 m/s: a place every 0.5 m)
    query_hz: float = 5.0
    map_speed: float = 1.0
    query_speed: float = 1.4
    tunnel_length: float = 200.0
    sequence: bool = True
    metric_learning: int = 2        # degraded copies per map image for the encoder's metric term (0 = off)


def _drives(spec: DemoSpec, world):
    """(mapping trajectory, localization trajectory)."""
    c, closed, h = world.centreline, world.closed, world.camera_height
    if closed:  # a loop: map one lap; localize from another starting point, most of a lap, other direction of weave
        lap = float(np.sum(np.linalg.norm(np.diff(np.vstack([c, c[:1]]), axis=0), axis=1)))
        mp = drive(c, True, spec.seed * 100 + 1, height=h, start=0.0, distance=lap - 0.5, speed=spec.map_speed,
                   lateral=world.lane_offset, weave=0.1, speed_var=0.1)
        qp = drive(c, True, spec.seed * 100 + 2, height=h, start=0.3 * lap, distance=0.9 * lap, speed=spec.query_speed,
                   lateral=world.lane_offset + 0.3, weave=0.25)
    else:
        L = float(np.linalg.norm(c[-1] - c[0]))
        mp = drive(c, False, spec.seed * 100 + 1, height=h, start=1.0, distance=L - 2.0, speed=spec.map_speed,
                   lateral=world.lane_offset, weave=0.15, speed_var=0.1)
        qp = drive(c, False, spec.seed * 100 + 2, height=h, start=8.0, distance=L - 16.0, speed=spec.query_speed,
                   lateral=world.lane_offset + 0.6, weave=0.4)
    return mp, qp


def run_demo(out: str | Path, spec: DemoSpec = DemoSpec(), live: bool = False, progress=None, log=print,
             live_rate: float = 1.0) -> dict:
    from ..core.build import build_map
    from ..core.config import LocalizerConfig
    from ..core.dataset import read_csv
    from ..core.encoder import EncoderTraining
    from ..core.localizer import Localizer
    from ..tools.replay import replay_bag, score

    out = Path(out)
    t_start = time.perf_counter()
    timings = {}
    t0 = time.perf_counter()
    world = make_world(spec.world, spec.seed, **({"length": spec.tunnel_length} if spec.world == "tunnel" else {}))
    mp, qp = _drives(spec, world)
    mrun = record(world, mp, "lit", out / "mapping_run", camera_hz=spec.map_hz, seed=spec.seed * 100 + 3,
                  progress=progress)
    qrun = record(world, qp, spec.condition, out / "localization_run", camera_hz=spec.query_hz,
                  seed=spec.seed * 100 + 4, progress=progress)
    timings["generate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg = LocalizerConfig(map_path=str(out / "map"))
    # learned keypoints only for the live run (the node publishes verified single-image fixes beside the filter's):
    # the offline replay runs the sequence filter, and their extraction would add about a minute to the build
    build_map(read_csv(mrun.csv), out / "map", cfg, session="mapping_run", overwrite=True, progress=progress,
              training=EncoderTraining(degraded_per_image=spec.metric_learning,
                                       metric_weight=1.0 if spec.metric_learning else 0.0), keypoints=live)
    timings["build_map_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    loc = Localizer(out / "map", cfg)
    r = replay_bag(qrun.bag, loc, sequence=spec.sequence, progress=progress)
    timings["localize_s"] = time.perf_counter() - t0
    report = {"world": spec.world, "seed": spec.seed, "condition": spec.condition,
              "map_places": len(loc.map), "map_spacing_m": float(loc.pose_model.spacing),
              "localization_frames": int(len(r.t_ns)), "backend": loc.backend_name, "sequence": spec.sequence,
              **score(r.est, r.cov, r.ok, r.truth, r.latency_ms)}
    from ..tools.plots import plot_bag_eval

    pngs = plot_bag_eval(r.t_ns, r.est, r.truth, r.cov, r.ok, out, list(loc.map.places.xyz))
    loc.close()
    if live:
        t0 = time.perf_counter()
        from ..tools.live import run_live

        report["live"] = run_live(qrun.bag, out / "map", rate=live_rate, log=log)
        timings["live_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    report.update(plots=[str(p) for p in pngs], timings=timings, spec=asdict(spec),
                  files={"mapping_bag": str(mrun.bag), "mapping_csv": str(mrun.csv), "localization_bag": str(qrun.bag),
                         "localization_csv": str(qrun.csv), "map": str(out / "map")})
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
