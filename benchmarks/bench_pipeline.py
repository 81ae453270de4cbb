#!/usr/bin/env python3
"""Per-stage latency of the localization pipeline on this machine, and single-stream throughput.

Stages (ms, p50/p99): decode (JPEG file -> RGB), preprocess (low light + resize to 320x240), cnn,
encoder, index (SOM lookup + exact re-score), pose (consensus + covariance); plus the sequence filter
when --sequence. Images: a dataset CSV (e.g. ../shared/data/bgu_campus/queries.csv) or, by default,
generated 320x240 JPEG scenes.

    python benchmarks/bench_pipeline.py --map MAPDIR [--images-csv CSV] [--n 300] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from visloc_ros.core.config import FILTER_KINDS, LocalizerConfig
from visloc_ros.core.localizer import Localizer
from visloc_ros.core.synthetic import draw_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", required=True)
    ap.add_argument("--images-csv")
    ap.add_argument("--n", type=int, default=300, help="frames to time (after 10 warm-up frames)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--sequence", action="store_true", help="also run the sequence filter per frame")
    ap.add_argument("--filter", choices=FILTER_KINDS, help="with --sequence: which filter (default: the map's)")
    ap.add_argument("--json")
    a = ap.parse_args()

    tmp = None
    if a.images_csv:
        from visloc_ros.core.dataset import read_csv
        ds = read_csv(a.images_csv)
        paths = [ds.path(i) for i in range(len(ds))]
    else:
        tmp = tempfile.TemporaryDirectory()
        paths = []
        for i in range(50):
            p = Path(tmp.name) / f"{i}.jpg"
            cv2.imwrite(str(p), draw_scene(1000 + i, 320, 240), [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(p)
    loc = Localizer(a.map, LocalizerConfig(map_path=a.map, threads=a.threads, backend=a.backend))
    seq = None
    if a.sequence:
        from visloc_ros.core.temporal import make_filter
        seq = make_filter(loc, kind=a.filter)
    step = (lambda p: seq.update(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))) if seq else loc.localize
    for i in range(10):
        step(paths[i % len(paths)])
    stages, total = {}, []
    t_start = time.perf_counter()
    for i in range(a.n):
        t0 = time.perf_counter()
        fix = loc.localize(paths[i % len(paths)]) if seq is None else None
        if seq is not None:
            rgb_t = time.perf_counter()
            from visloc_ros.core.preprocess import load_image
            rgb = load_image(paths[i % len(paths)])
            dec = (time.perf_counter() - rgb_t) * 1e3
            fix = seq.update(rgb)
            fix.timings_ms["decode"] = dec
        total.append((time.perf_counter() - t0) * 1e3)
        for k, v in fix.timings_ms.items():
            stages.setdefault(k, []).append(v)
    wall = time.perf_counter() - t_start
    rep = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs",
           "backend": loc.backend_name, "threads": a.threads, "map_places": len(loc.map), "frames": a.n,
           "input": a.images_csv or "generated 320x240 JPEG", "stages_ms": {}, "sequence": bool(seq)}
    print(f"backend {loc.backend_name}, {a.threads} threads, map of {len(loc.map)} places, {a.n} frames")
    for k, v in stages.items():
        v = np.array(v)
        rep["stages_ms"][k] = {"p50": round(float(np.percentile(v, 50)), 3), "p99": round(float(np.percentile(v, 99)), 3)}
        print(f"  {k:>10}: p50 {np.percentile(v, 50):7.3f} ms   p99 {np.percentile(v, 99):7.3f} ms")
    t = np.array(total)
    rep["image_to_pose_ms"] = {"p50": round(float(np.percentile(t, 50)), 2), "p99": round(float(np.percentile(t, 99)), 2)}
    rep["throughput_images_per_s"] = round(a.n / wall, 1)
    print(f"  image-to-pose: p50 {np.percentile(t, 50):.2f} ms  p99 {np.percentile(t, 99):.2f} ms;"
          f" throughput {a.n / wall:.1f} images/s (one stream)")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
