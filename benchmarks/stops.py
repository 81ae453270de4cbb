#!/usr/bin/env python3
"""Where a run's misses are: frames taken while both runs stood still.

Ground truth given as a frame index (Nordland's ``x``) counts every frame of a stop as a different place. Where
the mapping run and the query run both stood still (a train in a station), consecutive images of each run are
the same picture: a frame taken there matches every place of the map's stop equally, and a fix on any of them
is at the right physical spot, yet off by up to the stop's length in frames. This script finds the stops from
the images (consecutive images, grey and resized to 64x32, whose mean absolute difference is below ``--still``
grey levels, neither darker than ``--dark``: a tunnel looks the same all along while the train moves), then
reports for the predictions:

- ``within_radius``: the plain figure (what ``visloc eval`` reports, the one the accuracy tables give);
- ``within_radius_of_stop``: a frame taken while both runs stood still, its truth in a stop of the map's run,
  is right when the fix is within R of any place of that stop (the same physical spot); other frames as before;
- how many frames were taken in stops, and how many of the plain misses are among them;
- ``within_radius_moving_frames``: the plain figure over the other frames.

It explains the tables' figures; it does not replace them.

    python benchmarks/stops.py --pred P.csv --truth ../shared/data/nordland/queries.csv \\
        --map-csv ../shared/data/nordland/map.csv --radius 20 [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from visloc_ros.core.dataset import read_csv
from visloc_ros.core.metrics import match, read_predictions


def still_with_previous(paths: list, still: float, dark: float, what: str) -> np.ndarray:
    """Per image of a run: it shows what the previous one showed (mean absolute difference of the grey 64x32
    images below ``still``), and neither is dark (below ``dark`` mean grey: a tunnel looks the same all along)."""
    flags, prev = np.zeros(len(paths), bool), None
    for i, path in enumerate(tqdm(paths, desc=what, unit="img")):
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise SystemExit(f"error: cannot read image {path}")
        grey = cv2.resize(grey, (64, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        if prev is not None:
            flags[i] = float(np.abs(grey - prev).mean()) < still and min(grey.mean(), prev.mean()) >= dark
        prev = grey
    return flags


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pred", required=True, help="predictions CSV (visloc localize --out)")
    ap.add_argument("--truth", required=True, help="query CSV with the true positions")
    ap.add_argument("--map-csv", required=True, help="the CSV the map was built from (its run's order)")
    ap.add_argument("--radius", type=float, required=True)
    ap.add_argument("--still", type=float, default=1.0, help="grey levels: consecutive map images closer than this")
    ap.add_argument("--dark", type=float, default=10.0, help="mean grey below which an image is too dark to judge")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    truth, mp = read_csv(a.truth), read_csv(a.map_csv)
    if truth.georeferenced or mp.georeferenced:
        raise SystemExit("error: stops are for ground truth in a map/index frame (x, y), not lat/lon")
    m = match(read_predictions(a.pred), truth)
    map_still = still_with_previous([mp.path(i) for i in range(len(mp))], a.still, a.dark, "map images")
    query_still = still_with_previous([truth.path(i) for i in range(len(truth))], a.still, a.dark, "query images")
    query_still[:-1] |= query_still[1:]  # still with the previous or the next frame
    stops = np.cumsum(~map_still)         # consecutive still map places share one stop id
    mxy, txy, est = mp.xyz[:, :2], m.truth, m.est
    nearest = np.argmin(((txy[:, None] - mxy[None]) ** 2).sum(2), axis=1)  # each frame's true map place
    err = np.linalg.norm(est - txy, axis=1)
    err_stop = err.copy()
    in_stop = np.zeros(len(txy), bool)
    for i, j in enumerate(nearest):
        members = np.flatnonzero(stops == stops[j])
        if len(members) > 1 and query_still[i]:  # both runs stood still: the same spot, whatever the index
            in_stop[i] = True
            err_stop[i] = min(err[i], float(np.min(np.linalg.norm(mxy[members] - est[i], axis=1))))
    ok = np.nan_to_num(err, nan=np.inf) <= a.radius
    ok_stop = np.nan_to_num(err_stop, nan=np.inf) <= a.radius
    sizes = np.bincount(stops)
    out = {
        "frames": int(len(txy)),
        "map_stops": int((sizes > 1).sum()),
        "map_places_in_stops": int(sizes[sizes > 1].sum()),
        "frames_in_stops": int(in_stop.sum()),
        "within_radius": round(float(ok.mean()), 4),
        "within_radius_of_stop": round(float(ok_stop.mean()), 4),
        "misses": int((~ok).sum()),
        "misses_in_stops": int((~ok & in_stop).sum()),
        "within_radius_moving_frames": round(float(ok[~in_stop].mean()), 4) if (~in_stop).any() else None,
    }
    for k, v in out.items():
        print(f"{k:30s} {v}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
