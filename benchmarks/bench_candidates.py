#!/usr/bin/env python3
"""Single images: how far the fix is from what its candidates allow.

For each query of a labelled set, the map's own localizer (its weights, verification and pose model, as
`visloc localize` runs it) ranks the places; each figure is the share of queries, per condition (day, night,
...) and over all, whose answer lies within --radius of the truth:

- first: the best place by similarity, before the candidate verification;
- verified: the best place after it;
- fix: the fast fix's position (the pose consensus over the verified candidates);
- kp_first, kp_fix (maps with learned keypoints): the best place after the keypoint check of the
  ``keypoint_candidates`` best, and the verified fix's position (`visloc localize`'s default on such maps);
- among N: some place among the N best by similarity is within the radius, for N = 5, 10 and the pose's
  candidates: what a perfect re-ranker of those N could reach.

A wide gap between `among 5` and `verified` says the ranking finds the place but cannot tell it from its
neighbours in the ranking; a low `among N` says the descriptor itself does not find it. With keypoints, the
per-frame cost of the check is printed too (extract, match, geometry: p50 and p99, ms).

    python benchmarks/bench_candidates.py --map maps/campus --images-csv ../shared/data/bgu_campus/queries.csv \\
        --radius 25 [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visloc_ros.core.dataset import read_csv
from visloc_ros.core.localizer import Localizer
from visloc_ros.core.preprocess import load_image

AMONG = (5, 10)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", required=True)
    ap.add_argument("--images-csv", required=True)
    ap.add_argument("--radius", type=float, required=True)
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    loc = Localizer(a.map)
    q = read_csv(a.images_csv, loc.datum)
    xy = loc.map.places.xyz[:, :2]
    k = loc.config.top_k
    among = sorted({n for n in AMONG if n < k} | {k})
    rows, costs = [], []
    for i in tqdm(range(len(q)), desc="ranking candidates"):
        rgb = load_image(q.path(i))
        e = loc.embed(rgb)
        fix = loc.localize_embedding(e)
        # the verification reorders the k best and keeps each one's similarity: their order by similarity is the
        # ranking before it
        ranked = fix.candidate_ids[:k][np.argsort(-fix.candidate_scores[:k], kind="stable")]
        near = np.linalg.norm(xy[ranked] - q.xyz[i, :2], axis=1) <= a.radius
        rows.append({"first": bool(near[0]),
                     "verified": bool(np.linalg.norm(xy[fix.candidate_ids[0]] - q.xyz[i, :2]) <= a.radius),
                     "fix": bool(np.linalg.norm(fix.xyz[:2] - q.xyz[i, :2]) <= a.radius),
                     **{f"among_{n}": bool(near[:n].any()) for n in among}})
        if loc.verifies_keypoints:
            v = loc.verify_fix(rgb, fix)
            rows[-1].update(kp_first=bool(np.linalg.norm(xy[v.candidate_ids[0]] - q.xyz[i, :2]) <= a.radius),
                            kp_fix=bool(np.linalg.norm(v.xyz[:2] - q.xyz[i, :2]) <= a.radius))
            costs.append([v.timings_ms[s] for s in ("kp_extract", "kp_match", "kp_geometry", "kp_pose")])
    conds = np.array([c or "unlabelled" for c in q.condition or [""] * len(q)])
    groups = {"all": np.ones(len(q), bool)}
    if len(set(conds)) > 1:
        groups.update({c: conds == c for c in sorted(set(conds))})
    keys = list(rows[0])
    report = {"radius": a.radius, "candidates": k, "verifies": loc.local_weight > 0,
              "keypoint_candidates": loc.config.keypoint_candidates if loc.verifies_keypoints else 0,
              "by_condition": {g: {"queries": int(m.sum()),
                                   **{key: round(float(np.mean([r[key] for r, s in zip(rows, m) if s])), 4)
                                      for key in keys}}
                               for g, m in groups.items()}}
    print(f"within {a.radius:g} of the truth ({k} candidates; verification {'on' if report['verifies'] else 'off'}):")
    print(f"  {'':8s} {'queries':>8s} " + " ".join(f"{key:>10s}" for key in keys))
    for g, r in report["by_condition"].items():
        print(f"  {g:8s} {r['queries']:8d} " + " ".join(f"{100 * r[key]:9.1f}%" for key in keys))
    if costs:
        c = np.array(costs)
        report["keypoint_cost_ms"] = {s: {"p50": round(float(np.percentile(c[:, j], 50)), 2),
                                          "p99": round(float(np.percentile(c[:, j], 99)), 2)}
                                      for j, s in enumerate(("extract", "match", "geometry", "pose"))}
        total = c.sum(1)
        report["keypoint_cost_ms"]["total"] = {"p50": round(float(np.percentile(total, 50)), 2),
                                               "p99": round(float(np.percentile(total, 99)), 2)}
        print(f"keypoint check of {loc.config.keypoint_candidates} candidates, ms (p50 / p99): " +
              ", ".join(f"{s} {v['p50']:.1f} / {v['p99']:.1f}" for s, v in report["keypoint_cost_ms"].items()))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
