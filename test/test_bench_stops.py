"""benchmarks/stops.py: frames taken while both runs stood still are found from the images, and scored against
the whole stop."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest

from conftest import REPO
from visloc_ros.core.metrics import PRED_COLUMNS, write_predictions


@pytest.fixture(scope="module")
def stops():
    spec = importlib.util.spec_from_file_location("bench_stops", REPO / "benchmarks" / "stops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(folder, name, n, stop, dark=()):
    """``n`` frames of a textured strip passing by, standing still over the frames in ``stop``; frames in
    ``dark`` are nearly black (a tunnel) and change anyway."""
    rng = np.random.default_rng(7)
    strip = (rng.random((32, 64 + 4 * n)) * 255).astype(np.uint8)
    strip = cv2.resize(cv2.GaussianBlur(strip, (5, 5), 0), None, fx=2, fy=2)
    (folder / name).mkdir()
    lines, offset = ["image,x,y"], 0
    for i in range(n):
        if i not in stop:
            offset += 8
        img = strip[:, offset:offset + 128].copy()
        if i in dark:
            img = (img // 40).astype(np.uint8)
        cv2.imwrite(str(folder / name / f"{i:03d}.png"), img)
        lines.append(f"{name}/{i:03d}.png,{i * 10},0")
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.csv"


def test_still_images_dark_ones_excluded(stops, tmp_path):
    _run(tmp_path, "run", 12, stop=range(4, 8), dark=range(9, 12))
    paths = [tmp_path / "run" / f"{i:03d}.png" for i in range(12)]
    flags = stops.still_with_previous(paths, still=1.0, dark=10.0, what="test")
    assert flags.tolist() == [i in (4, 5, 6, 7) for i in range(12)]  # a dark stretch is never "still"


def test_frames_in_a_stop_are_scored_against_the_whole_stop(stops, tmp_path):
    stop = range(4, 9)  # frames 3..8 show the same picture in both runs
    map_csv = _run(tmp_path, "map", 14, stop)
    query_csv = _run(tmp_path, "query", 14, stop)
    # fixes: right on the moving frames, frame 3's place for the whole stop (right by the picture, off by up to
    # 5 frames by the index), and one real miss on frame 12
    est = [i * 10 for i in range(14)]
    est[3:9] = [30] * 6
    est[12] = 0
    rows = [{c: "" for c in PRED_COLUMNS} | dict(image=f"query/{i:03d}.png", x=str(x), y="0", cov_xx="1",
                                                  cov_yy="1", cov_xy="0") for i, x in enumerate(est)]
    pred = tmp_path / "pred.csv"
    write_predictions(pred, rows)
    out = tmp_path / "stops.json"
    assert stops.main(["--pred", str(pred), "--truth", str(query_csv), "--map-csv", str(map_csv),
                       "--radius", "20", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["frames"] == 14 and r["frames_in_stops"] == 6 and r["map_places_in_stops"] == 6
    # plain: frames 6, 7, 8 are 30-50 off by the index, frame 12 is 120 off
    assert r["misses"] == 4 and r["within_radius"] == pytest.approx(10 / 14, abs=1e-4)
    assert r["misses_in_stops"] == 3
    assert r["within_radius_of_stop"] == pytest.approx(13 / 14, abs=1e-4)
    assert r["within_radius_moving_frames"] == pytest.approx(7 / 8, abs=1e-4)


def test_georeferenced_truth_refused(stops, tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("image,lat,lon\na.png,31.2,34.8\n")
    with pytest.raises(SystemExit, match="lat/lon"):
        stops.main(["--pred", str(t), "--truth", str(t), "--map-csv", str(t), "--radius", "20"])
