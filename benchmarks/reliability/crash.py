"""Crash safety: `visloc build-map` and `visloc add-places` killed with SIGKILL at random moments, and a full disk.

Before the trials a map is built and its answers to a query set recorded. Each trial starts a build (or an
add-places) that would replace that map and kills it at a random moment: two trials in three uniform over the
measured duration of an uninterrupted run, one in three while the new map is being written (0-60 ms after its
temp folder appears). Afterwards the target folder must be either the untouched old map (every file's
hash as before, and the same answers to the same queries, compared column by column) or the complete new one
(it loads and has the new number of places); never a mix. Leftover temp folders beside it are counted (the next
write removes them). The full disk: the old map on a small tmpfs and a build that needs more than is left (where
tmpfs cannot be mounted, ``ENOSPC`` raised at the map's write calls instead, and the report says so).
"""
from __future__ import annotations

import csv
import hashlib
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .rig import visloc


def tree_hash(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def answers(map_dir: Path, queries: Path, out: Path) -> list[dict]:
    r = subprocess.run(visloc("localize", "--map", str(map_dir), "--images-csv", str(queries), "--out", str(out),
                              "--fast"), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return [{"error": r.stderr.strip()[-300:]}]
    with open(out) as f:
        return [{k: v for k, v in row.items() if k != "latency_ms"} for row in csv.DictReader(f)]


def build_args(ds: Path, out: Path) -> list[str]:
    return visloc("build-map", "--images-csv", str(ds), "--out", str(out), "--force", "--encoder-steps", "150",
                  "--latent-dim", "64")


def run(work: Path, trials: int, log=print, rng_seed: int = 0) -> dict:
    from visloc_ros.core.map_db import load_map
    from visloc_ros.core.synthetic import make_dataset

    work.mkdir(parents=True, exist_ok=True)
    a_map, a_q = make_dataset(work / "ds_a", n_places=30, n_queries=12, seed=5)
    b_map, _ = make_dataset(work / "ds_b", n_places=40, n_queries=4, seed=6)
    target, pristine = work / "target", work / "pristine"
    r = subprocess.run(build_args(a_map, pristine), capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"building the first map failed: {r.stderr.strip()[-500:]}")
    old_hash = tree_hash(pristine)
    baseline = answers(pristine, a_q, work / "baseline.csv")
    n_old = len(load_map(pristine))
    def command(kind: str) -> list[str]:  # the write that is timed, then killed: a rebuild or added places
        return build_args(b_map, target) if kind == "build" else visloc(
            "add-places", "--map", str(target), "--images-csv", str(b_map), "--session", "more")

    # how long an uninterrupted run of each takes, to kill at a random moment of it
    durations = {}
    for kind in ("build", "add"):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(pristine, target)
        t0 = time.monotonic()
        r = subprocess.run(command(kind), capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"{kind} failed: {r.stderr.strip()[-500:]}")
        durations[kind] = time.monotonic() - t0
    n_new = {"build": 40, "add": n_old + 40}
    rng = random.Random(rng_seed)
    rows = []
    for i in range(trials):
        kind = "build" if i % 2 == 0 else "add"
        shutil.rmtree(target, ignore_errors=True)
        for left in work.glob(".target.*"):  # what the previous trial left (counted there)
            shutil.rmtree(left, ignore_errors=True)
        shutil.copytree(pristine, target)
        cmd = command(kind)
        # two kills in three at a random moment of the run; one in three while the map is being written (0-60 ms
        # after its temp folder appears beside the target)
        during_write = i % 3 == 2
        at = durations[kind] * rng.uniform(0.02, 1.0)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_start, killed = time.monotonic(), False
        if during_write:
            while p.poll() is None and not (work / f".target.tmp-{p.pid}").exists():
                time.sleep(0.001)
            at = time.monotonic() - t_start + rng.uniform(0.0, 0.06)
        try:
            p.wait(timeout=max(0.0, at - (time.monotonic() - t_start)))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed = True
        leftovers = len(list(work.glob(".target.*")))
        state, same = "mixed", None
        if target.is_dir() and tree_hash(target) == old_hash:
            state = "old"
            same = answers(target, a_q, work / "after.csv") == baseline
        else:
            try:
                state = "new" if len(load_map(target)) == n_new[kind] else "mixed"
            except Exception as e:  # noqa: BLE001: a broken target is the finding
                state = f"broken: {e}"
        rows.append({"trial": i, "command": "build-map" if kind == "build" else "add-places",
                     "killed_at_s": round(at, 3), "killed": killed, "during_write": during_write, "target": state,
                     "same_answers": same, "temp_folders_left": leftovers})
        log(f"crash trial {i}: {rows[-1]}")
    # the next write removes what a killed one left beside the target
    shutil.rmtree(target, ignore_errors=True)
    if rows and not list(work.glob(".target.*")):  # leave one as a killed write does, if the last trial did not
        (work / ".target.tmp-999999").mkdir()
    shutil.copytree(pristine, target)
    r = subprocess.run(build_args(b_map, target), capture_output=True, text=True, timeout=600)
    swept = r.returncode == 0 and not list(work.glob(".target.*"))
    disk = full_disk(work, pristine, b_map, old_hash, a_q, baseline)
    intact = sum(1 for x in rows if x["target"] in ("old", "new") and x["same_answers"] in (None, True))
    return {"trials": len(rows), "killed": sum(x["killed"] for x in rows), "intact": intact,
            "killed_while_writing": sum(x["killed"] and x["during_write"] for x in rows),
            "old": sum(x["target"] == "old" for x in rows), "new": sum(x["target"] == "new" for x in rows),
            "durations_s": {k: round(v, 1) for k, v in durations.items()}, "leftovers_swept": swept,
            "rows": rows, "full_disk": disk, "ok": intact == len(rows) and swept and disk["ok"]}


def full_disk(work: Path, pristine: Path, new_csv: Path, old_hash: dict, queries: Path, baseline: list) -> dict:
    mnt = work / "small_disk"
    mnt.mkdir(exist_ok=True)
    size = sum(p.stat().st_size for p in pristine.iterdir())
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size * 1.5) // 4096 * 4096 + 4096}", "tmpfs",
                        str(mnt)], capture_output=True, text=True)
    if r.returncode == 0:
        how = f"tmpfs of {size * 1.5 / 1e6:.1f} MB (the old map {size / 1e6:.1f} MB, the new one larger)"
        try:
            target = mnt / "map"
            shutil.copytree(pristine, target)
            res = subprocess.run(build_args(new_csv, target), capture_output=True, text=True, timeout=600)
            left = [p.name for p in mnt.iterdir() if p.name.startswith(".")]
            same_files = tree_hash(target) == old_hash
            same = answers(target, queries, work / "disk.csv") == baseline
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    else:
        how = "simulated: ENOSPC raised by numpy.save in the build's process (tmpfs could not be mounted: " \
              f"{r.stderr.strip() or 'not permitted'})"
        target = work / "disk_map"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(pristine, target)
        code = ("import errno, sys, numpy\n"
                "def full(*a, **k):\n    raise OSError(errno.ENOSPC, 'No space left on device')\n"
                "numpy.save = full\nfrom visloc_ros.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
        res = subprocess.run([sys.executable, "-c", code, *build_args(new_csv, target)[1:]], capture_output=True,
                             text=True, timeout=600)
        left = [p.name for p in work.iterdir() if p.name.startswith(".disk_map")]
        same_files = tree_hash(target) == old_hash
        same = answers(target, queries, work / "disk.csv") == baseline
    lines = res.stderr.strip().splitlines()
    one_line = bool(lines) and lines[-1].startswith("visloc build-map: error:") and "Traceback" not in res.stderr
    return {"how": how, "exit_code": res.returncode, "message": lines[-1] if lines else "", "one_line": one_line,
            "old_map_untouched": same_files, "same_answers": same, "temp_left": left,
            "ok": res.returncode == 1 and one_line and same_files and same and not left}
