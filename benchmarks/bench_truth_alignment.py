#!/usr/bin/env python3
"""Does a route's stated truth agree with its images? An audit for two traversals of the same route.

Sets like the corridor label each query with the index of "its" map frame (x = frame number), assuming the two
traversals were driven at the same pace. Where the pace differed, a localizer that finds the right place is
scored wrong. This benchmark aligns the whole query traversal with the whole map traversal from the images
alone (offline, both directions in time: the best *monotone* path through the similarity matrix, dynamic time
warping, which no causal localizer can use) and reports how far that alignment strays from the stated truth:

- ``aligned_within``: the share of queries whose aligned map position lies within --radius of their stated
  truth: roughly what a localizer that agreed with the images everywhere would score;
- the offset (aligned minus stated, along the route), its mean and its largest value;
- with ``--pred`` (a ``visloc localize`` output, map-frame x/y): the share of predictions within --radius of
  the stated truth next to the share within --radius of the alignment.

The similarity is the pipeline's own signals without a map's encoder: the CNN's global and (centred) regional
descriptors and the appearance thumbnails, each z-scored over the map frames and added (``--signals`` picks
them). The alignment is therefore not an independent ground truth; it says how much of a set's error budget
the labelling itself may take. Sets with a trustworthy truth (Nordland: the traversals are synchronised by
GPS) are the control.

    python benchmarks/bench_truth_alignment.py --map-csv ../shared/data/corridor/map.csv \\
        --queries-csv ../shared/data/corridor/queries.csv --radius 2 [--pred PRED.csv] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visloc_ros.core.appearance import zscore
from visloc_ros.core.build import describe_images
from visloc_ros.core.dataset import read_csv
from visloc_ros.core.descriptor import CnnDescriptor, centred, regional_mean

SIGNALS = ("global", "regional", "thumbs")


def monotone_alignment(sim: np.ndarray) -> list[tuple[int, int]]:
    """The path from (0, 0) to (n-1, m-1) with steps (1, 1), (1, 0), (0, 1) that maximises the summed similarity
    (dynamic time warping), as (query, map) index pairs. Each row of the accumulated table is one vectorised
    max-plus scan: C[i, j] = P[j] + max_{k <= j} (A[k] - P[k-1]), P the row's running sum and A[k] the better
    of the two cells above-left and above. The similarities are first shifted to be <= 0 (a cost, as in classic
    DTW), so that a detour gathers no extra credit for passing through more cells."""
    sim = np.asarray(sim, float) - float(np.max(sim))
    n, m = sim.shape
    acc = np.empty((n, m))
    acc[0] = np.cumsum(sim[0])
    for i in range(1, n):
        above = acc[i - 1]
        a = np.maximum(above, np.concatenate([[-np.inf], above[:-1]]))
        p = np.cumsum(sim[i])
        p_before = np.concatenate([[0.0], p[:-1]])
        acc[i] = p + np.maximum.accumulate(a - p_before)
    path, i, j = [(n - 1, m - 1)], n - 1, m - 1
    while i > 0 or j > 0:
        steps = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        steps = [(a, b) for a, b in steps if a >= 0 and b >= 0]
        i, j = max(steps, key=lambda s: acc[s])
        path.append((i, j))
    return path[::-1]


def aligned_positions(path: list[tuple[int, int]], map_xyz: np.ndarray, n: int) -> np.ndarray:
    """Each query's aligned map position: the mean of the map positions it is paired with."""
    pos = np.zeros((n, map_xyz.shape[1]))
    count = np.zeros(n)
    for q, r in path:
        pos[q] += map_xyz[r]
        count[q] += 1
    return pos / count[:, None]


def similarity(m, q, signals) -> np.ndarray:
    """Queries x map frames: the chosen signals' z-scores (over the map frames), added."""
    total = np.zeros((len(q.desc), len(m.desc)), np.float32)
    if "global" in signals:
        total += zscore(q.desc @ m.desc.T)
    if "regional" in signals and m.regional is not None:
        mean = regional_mean(m.regional)
        total += zscore(centred(q.regional, mean) @ centred(m.regional, mean).T)
    if "thumbs" in signals:
        total += zscore(q.thumbs @ m.thumbs.T)
    return total


def read_predictions(path: str, n: int) -> np.ndarray:
    """(n, 2) map-frame x/y of a ``visloc localize`` output; NaN where a fix was withheld."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != n:
        raise SystemExit(f"error: {path} has {len(rows)} rows, the queries CSV {n}")
    return np.array([[float(r["x"] or "nan"), float(r["y"] or "nan")] for r in rows])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map-csv", required=True, help="the map traversal (CSV dataset)")
    ap.add_argument("--queries-csv", required=True, help="the query traversal, same route, same direction")
    ap.add_argument("--radius", type=float, required=True, help="right when within this distance (x/y units)")
    ap.add_argument("--signals", nargs="+", choices=SIGNALS, default=list(SIGNALS))
    ap.add_argument("--pred", help="a `visloc localize` output for these queries, compared with both truths")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    mds = read_csv(a.map_csv)
    qds = read_csv(a.queries_csv, datum=None)
    if mds.georeferenced or qds.georeferenced:
        raise SystemExit("error: this audit is for routes labelled in a local x/y frame (frame index or metres)")
    cnn = CnnDescriptor()
    try:
        m = describe_images(mds, cnn, (320, 240), progress=tqdm)
        q = describe_images(qds, cnn, (320, 240), progress=tqdm)
    finally:
        cnn.close()
    if len(m.kept) != len(mds) or len(q.kept) != len(qds):
        raise SystemExit("error: unreadable images: " + "; ".join(m.skipped + q.skipped))
    path = monotone_alignment(similarity(m, q, a.signals))
    aligned = aligned_positions(path, mds.xyz[:, :2], len(qds))
    stated = qds.xyz[:, :2]
    along = np.linalg.norm(aligned - stated, axis=1)
    signed = aligned[:, 0] - stated[:, 0]
    rep = {"queries": len(qds), "map_frames": len(mds), "radius": a.radius, "signals": a.signals,
           "aligned_within": float(np.mean(along <= a.radius)),
           "offset_x_mean": float(signed.mean()), "offset_max": float(along.max()),
           "offset_median": float(np.median(along))}
    print(f"{len(qds)} queries against {len(mds)} map frames ({'+'.join(a.signals)}): the images' best monotone "
          f"alignment lies within {a.radius:g} of the stated truth for {100 * rep['aligned_within']:.1f} % of "
          f"queries (offset along x mean {rep['offset_x_mean']:+.2f}, median distance {rep['offset_median']:.2f},"
          f" largest {rep['offset_max']:.2f})")
    if a.pred:
        p = read_predictions(a.pred, len(qds))
        ok = ~np.isnan(p).any(1)
        rep["pred_within_stated"] = float(np.mean(ok & (np.linalg.norm(p - stated, axis=1) <= a.radius)))
        rep["pred_within_aligned"] = float(np.mean(ok & (np.linalg.norm(p - aligned, axis=1) <= a.radius)))
        print(f"{a.pred}: within {a.radius:g} of the stated truth {100 * rep['pred_within_stated']:.1f} %, of the "
              f"images' alignment {100 * rep['pred_within_aligned']:.1f} %")
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=2))
    return rep


if __name__ == "__main__":
    main()
