#!/usr/bin/env python3
"""`visloc serve`: the time an upload takes beyond the localizer's own, over real loopback HTTP.

Starts `visloc serve --map MAP` in its own process, uploads each photo of --images-csv (multipart, as the page and
curl send it) one after the other, and reports per upload (ms, p50 / p99): the round trip seen by the client, the
localizer's own time (the `timings_ms.localizer` of the answer) and the difference (decoding, multipart parsing,
JSON, HTTP); with truth in the CSV also the share of answers within --radius. --screenshot PNG saves the page,
with the answer to one photo (--screenshot-photo) drawn, from headless chromium (Debian's chromium + chromium-driver).

    python benchmarks/bench_serve.py --map maps/campus --images-csv ../shared/data/bgu_campus/queries.csv \\
        --radius 25 [--limit 100] [--screenshot docs/web_map.png --screenshot-photo 298] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import select
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visloc_ros.cli.main import command
from visloc_ros.core.dataset import read_csv
from visloc_ros.core.geo import Datum, geodetic_to_enu


def start(map_dir, *extra: str) -> tuple[subprocess.Popen, str]:
    """``visloc serve --map MAP_DIR --port 0 EXTRA...`` in its own process; returns it and its base URL once it
    listens (its log is read on, a line per request, so that a full pipe never blocks it)."""
    proc = subprocess.Popen(command() + ["serve", "--map", str(map_dir), "--port", "0", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline, seen = time.time() + 180, []
    while time.time() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 1.0)[0]:
            line = proc.stdout.readline()
            seen.append(line)
            if "running on http://" in line:
                threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
                return proc, line.split("running on ")[1].split()[0]
    proc.kill()
    raise RuntimeError("visloc serve did not start:\n" + "".join(seen) + (proc.stdout.read() or ""))


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file field, and its Content-Type."""
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def upload(base: str, path: Path) -> tuple[dict, float]:
    body, ctype = multipart("image", path.name, path.read_bytes())
    req = urllib.request.Request(base + "/api/localize", data=body, headers={"Content-Type": ctype})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.loads(r.read())
    return out, (time.perf_counter() - t0) * 1e3


def screenshot(base: str, photo: Path, out: str) -> None:
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--hide-scrollbars"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)
    try:
        drv.get(base + "/")
        wait = WebDriverWait(drv, 60)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        drv.find_element(By.ID, "file").send_keys(str(photo.resolve()))
        wait.until(lambda d: d.find_elements(By.ID, "fix-point"))
        wait.until(lambda d: d.execute_script(
            "return [...document.images].every(i => !i.src || (i.complete && i.naturalWidth > 0))"))
        drv.save_screenshot(out)
    finally:
        drv.quit()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", required=True)
    ap.add_argument("--images-csv", required=True)
    ap.add_argument("--radius", type=float, default=25.0)
    ap.add_argument("--limit", type=int, default=0, help="first N photos only (0: all)")
    ap.add_argument("--screenshot", metavar="PNG")
    ap.add_argument("--screenshot-photo", type=int, default=0, metavar="I", help="row of --images-csv to upload for it")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    try:
        proc, base = start(a.map)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    try:
        m = json.loads(urllib.request.urlopen(base + "/api/map", timeout=30).read())
        datum = Datum(**m["datum"]) if m["georeferenced"] else None
        q = read_csv(a.images_csv, datum)
        n = len(q) if a.limit <= 0 else min(a.limit, len(q))
        upload(base, q.path(0))  # warm-up (first-call allocations)
        rt, loc, err = [], [], []
        for i in tqdm(range(n), desc="uploading images"):
            out, ms = upload(base, q.path(i))
            rt.append(ms)
            loc.append(out["timings_ms"]["localizer"])
            if datum is not None and out["lat"] is not None:
                xyz = geodetic_to_enu(np.array([out["lat"]]), np.array([out["lon"]]), np.zeros(1), datum)[0]
            else:
                xyz = np.array([out["x"], out["y"], 0.0])
            err.append(float(np.linalg.norm(xyz[:2] - q.xyz[i, :2])))
        if a.screenshot:
            screenshot(base, q.path(a.screenshot_photo), a.screenshot)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rt, loc = np.array(rt), np.array(loc)
    over = rt - loc
    pct = lambda x: {"p50": round(float(np.percentile(x, 50)), 2), "p99": round(float(np.percentile(x, 99)), 2)}
    report = {"map": a.map, "uploads": n, "round_trip_ms": pct(rt), "localizer_ms": pct(loc), "overhead_ms": pct(over),
              "within_radius": round(float(np.mean(np.array(err) <= a.radius)), 4), "radius": a.radius,
              "median_error_m": round(float(np.median(err)), 2)}
    print(f"{n} uploads to {base}: round trip p50 {report['round_trip_ms']['p50']:.1f} ms "
          f"(p99 {report['round_trip_ms']['p99']:.1f}), localizer p50 {report['localizer_ms']['p50']:.1f} ms, "
          f"beyond the localizer p50 {report['overhead_ms']['p50']:.1f} ms (p99 {report['overhead_ms']['p99']:.1f}); "
          f"within {a.radius:g} m {100 * report['within_radius']:.1f} %, median error {report['median_error_m']:.1f} m")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
