#!/usr/bin/env python3
"""Candidate verification: does re-ranking a query's best candidates pay for its cost?

For each query of a labelled set, the map's index gives the K best places by the CNN (appearance weight 0).
Each re-ranking below picks one of those K; the figure is how often the picked place lies within --radius of
the truth, next to what it costs per frame:

- cnn: the index's own first place (no verification);
- oracle: some place among the K is within the radius (what a perfect verifier could reach);
- local features + USAC: OpenCV SIFT or ORB (500 features, CLAHE), ratio test, fundamental matrix by
  cv2.USAC_MAGSAC; score = inliers + w * (z-scored CNN similarity among the K), for several w;
- thumbnails: the CNN similarity fused with the appearance thumbnails' (core/appearance.py) among the K.

The map's images are read from its image_root (map.yaml). This is the measurement behind docs/accuracy.md's
"candidate verification" rows; the step that ships is the thumbnails, fused over every place.

    python benchmarks/bench_verification.py --map maps/campus --images-csv ../shared/data/bgu_campus/queries.csv \\
        --radius 25 [--k 20] [--detector sift|orb] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from visloc_ros.core.appearance import fuse, zscore
from visloc_ros.core.config import LocalizerConfig
from visloc_ros.core.dataset import read_csv
from visloc_ros.core.localizer import Localizer

WEIGHTS = (0.0, 1.0, 2.0, 4.0)  # of the CNN's z-score next to the inlier count
THUMB_WEIGHTS = (0.25, 0.5, 1.0, 2.0)


class LocalFeatures:
    """Keypoints + descriptors of a grey, CLAHE-equalised image; inliers of a match under a fundamental matrix."""

    def __init__(self, detector: str):
        if detector == "sift":
            self.det, norm = cv2.SIFT_create(nfeatures=500), cv2.NORM_L2
        else:
            self.det, norm = cv2.ORB_create(nfeatures=500, edgeThreshold=15, patchSize=15), cv2.NORM_HAMMING
        self.matcher = cv2.BFMatcher(norm)
        self.clahe = cv2.createCLAHE(2.0, (4, 4))

    def describe(self, path: Path):
        g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if g is None:
            return [], None
        return self.det.detectAndCompute(self.clahe.apply(g), None)

    def inliers(self, a, b) -> int:
        (ka, da), (kb, db) = a, b
        if da is None or db is None or len(ka) < 8 or len(kb) < 8:
            return 0
        pairs = self.matcher.knnMatch(da, db, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance]
        if len(good) < 8:
            return 0
        pa = np.float32([ka[m.queryIdx].pt for m in good])
        pb = np.float32([kb[m.trainIdx].pt for m in good])
        try:
            _, mask = cv2.findFundamentalMat(pa, pb, cv2.USAC_MAGSAC, 3.0, 0.999, 2000)
        except cv2.error:  # degenerate point sets (a handful of keypoints on one line, as on 64x32 frames)
            return 0
        return 0 if mask is None else int(mask.sum())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", required=True)
    ap.add_argument("--images-csv", required=True)
    ap.add_argument("--radius", type=float, required=True)
    ap.add_argument("--k", type=int, default=20, help="candidates re-ranked (default 20)")
    ap.add_argument("--detector", choices=["sift", "orb"], default="sift")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    loc = Localizer(a.map, LocalizerConfig(map_path=a.map, appearance_weight=0.0, regional_weight=0.0, local_weight=0.0,
                                            top_k=a.k))
    if loc.map.appearance is None:
        raise SystemExit(f"{a.map} has no appearance thumbnails: rebuild it with `visloc build-map`")
    root = Path(loc.map.meta.get("image_root", ""))
    q = read_csv(a.images_csv, loc.datum)
    xy = loc.map.places.xyz[:, :2]
    lf = LocalFeatures(a.detector)
    map_feats: dict[int, object] = {}
    ok, cnn_s, app_s, inl = [], [], [], []
    t_query, t_pair = [], []
    for i in tqdm(range(len(q)), desc="verifying candidates"):
        e = loc.embed(q.path(i))
        fix = loc.localize_embedding(e)
        ids = fix.candidate_ids[:a.k]
        ok.append(np.linalg.norm(xy[ids] - q.xyz[i, :2], axis=1) <= a.radius)
        cnn_s.append(fix.candidate_scores[:a.k])
        app_s.append(np.asarray(loc.map.appearance[ids], np.float32) @ e.thumb)
        t0 = time.perf_counter()
        qf = lf.describe(q.path(i))
        t_query.append(time.perf_counter() - t0)
        row = []
        for j in ids:
            if j not in map_feats:  # the map side would be computed once, at build
                map_feats[j] = lf.describe(root / loc.map.places.images[j])
            t0 = time.perf_counter()
            row.append(lf.inliers(qf, map_feats[j]))
            t_pair.append(time.perf_counter() - t0)
        inl.append(row)
    k = min(len(r) for r in ok)
    ok = np.array([r[:k] for r in ok])
    cnn = np.array([s[:k] for s in cnn_s])
    app = np.array([s[:k] for s in app_s])
    inl = np.array([r[:k] for r in inl], float)
    rows = np.arange(len(ok))
    report = {"queries": len(ok), "k": k, "radius": a.radius, "detector": a.detector,
              "cnn_top1": float(ok[:, 0].mean()), "oracle_top_k": float(ok.any(1).mean()),
              "features_ms_per_query": 1e3 * float(np.median(t_query)),
              "match_usac_ms_per_candidate": 1e3 * float(np.median(t_pair)),
              "local_features": {}, "thumbnails": {}}
    for w in WEIGHTS:
        pick = np.argmax(inl + w * zscore(cnn), 1)
        report["local_features"][f"w={w:g}"] = float(ok[rows, pick].mean())
    for w in THUMB_WEIGHTS:
        pick = np.argmax(fuse(cnn, [(app, w)]), 1)
        report["thumbnails"][f"w={w:g}"] = float(ok[rows, pick].mean())
    right, wrong = inl[ok], inl[~ok]
    report["median_inliers_right_wrong"] = [float(np.median(right)) if right.size else None,
                                            float(np.median(wrong)) if wrong.size else None]
    print(f"{report['queries']} queries, {k} candidates each, within {a.radius:g}:")
    print(f"  cnn top-1 {100 * report['cnn_top1']:.1f} %   oracle among {k} {100 * report['oracle_top_k']:.1f} %")
    print(f"  {a.detector} + USAC: " + ", ".join(f"{n} {100 * v:.1f} %" for n, v in report["local_features"].items())
          + f"   (features {report['features_ms_per_query']:.1f} ms per query, match + USAC "
            f"{report['match_usac_ms_per_candidate']:.2f} ms per candidate; median inliers right / wrong "
            f"{report['median_inliers_right_wrong']})")
    print("  thumbnails: " + ", ".join(f"{n} {100 * v:.1f} %" for n, v in report["thumbnails"].items()))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
