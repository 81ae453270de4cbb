#!/usr/bin/env python3
"""Index benchmark: SOM multi-probe lookup vs exhaustive numpy search (and FAISS HNSW when installed).

Clustered synthetic latents (L2-normalised, 256-d) at each size; queries are held-out revisits (a
database place plus noise). Reports p50/p99 lookup latency, agreement with the exhaustive top-1,
build time and index memory. With --campus-map MAPDIR (a map built from ../shared/data/bgu_campus),
also the real campus latents queried with the campus query images' latents.

    python benchmarks/bench_index.py --sizes 10000 100000 1000000 --json OUT.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from visloc_ros.core.som_index import SomIndex, exhaustive_query, grid_shape, train_som


def clustered(n: int, d: int, rng: np.random.Generator, per_cluster: int = 100, noise: float = 0.35,
              chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """n latents in n/per_cluster clusters (places seen many times from nearby viewpoints)."""
    k = max(n // per_cluster, 1)
    centres = rng.standard_normal((k, d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, k, m)] + noise * rng.standard_normal((m, d)).astype(np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, centres


def revisits(db: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.25) -> np.ndarray:
    idx = rng.choice(len(db), n, replace=False)
    q = db[idx] + (noise / np.sqrt(db.shape[1])) * rng.standard_normal((n, db.shape[1])).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def timed(fn, queries) -> tuple[np.ndarray, list]:
    out, t = [], []
    for z in queries:
        t0 = time.perf_counter()
        out.append(fn(z))
        t.append((time.perf_counter() - t0) * 1e3)
    return np.array(t), out


def stats(t: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(t, 50)), 4), "p99_ms": round(float(np.percentile(t, 99)), 4)}


def bench(db: np.ndarray, queries: np.ndarray, probes: list[int], min_candidates: int, faiss_on: bool,
          label: str) -> dict:
    res = {"n": len(db), "dim": db.shape[1], "queries": len(queries)}
    t_ex, ex = timed(lambda z: exhaustive_query(db, z, 1)[0][0], queries)
    res["exhaustive"] = stats(t_ex) | {"memory_mb": round(db.nbytes / 2**20, 1)}
    t0 = time.perf_counter()
    cb = train_som(db, grid_shape(len(db)), seed=0)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx = SomIndex(cb, db)
    t_assign = time.perf_counter() - t0
    som_mem = (idx.codebook.nbytes + idx.cells.nbytes + idx._order.nbytes + idx._starts.nbytes) / 2**20
    res["som"] = {"grid": list(idx.shape), "train_s": round(t_train, 1), "assign_s": round(t_assign, 1),
                  "index_memory_mb": round(som_mem, 2), "by_n_probe": {}}
    for p in probes:
        t, top = timed(lambda z: idx.query(z, 1, p, min_candidates).ids[0], queries)
        agree = float(np.mean(np.array(top) == np.array(ex)))
        res["som"]["by_n_probe"][p] = stats(t) | {"agreement_top1": round(agree, 4),
                                                   "speedup_vs_exhaustive": round(float(np.median(t_ex) / np.median(t)), 1)}
        print(f"[{label} n={len(db)}] SOM n_probe={p}: p50 {np.percentile(t, 50):.3f} ms p99 {np.percentile(t, 99):.3f} ms "
              f"agreement {100 * agree:.1f}% speed-up x{np.median(t_ex) / np.median(t):.1f}", flush=True)
    print(f"[{label} n={len(db)}] exhaustive: p50 {np.percentile(t_ex, 50):.3f} ms p99 {np.percentile(t_ex, 99):.3f} ms",
          flush=True)
    if faiss_on:
        import faiss
        faiss.omp_set_num_threads(1)
        t0 = time.perf_counter()
        h = faiss.IndexHNSWFlat(db.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = 40
        h.add(db)
        h.hnsw.efSearch = 64
        t_build = time.perf_counter() - t0
        t, top = timed(lambda z: int(h.search(z[None], 1)[1][0, 0]), queries)
        agree = float(np.mean(np.array(top) == np.array(ex)))
        res["faiss_hnsw"] = stats(t) | {"agreement_top1": round(agree, 4), "build_s": round(t_build, 1),
                                         "speedup_vs_exhaustive": round(float(np.median(t_ex) / np.median(t)), 1)}
        print(f"[{label} n={len(db)}] FAISS HNSW32 ef64: p50 {np.percentile(t, 50):.3f} ms agreement {100 * agree:.1f}%",
              flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--probes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--min-candidates", type=int, default=256)
    ap.add_argument("--campus-map", metavar="MAPDIR", help="map built from bgu_campus/map.csv (real latents)")
    ap.add_argument("--campus-queries", metavar="CSV", help="bgu_campus/queries.csv (with --campus-map)")
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--json", metavar="OUT.json")
    a = ap.parse_args()
    try:
        import faiss  # noqa: F401
        faiss_on = not a.no_faiss
    except ImportError:
        faiss_on = False
        print("faiss not installed: FAISS HNSW skipped (pip install faiss-cpu to compare)")
    rng = np.random.default_rng(0)
    report = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs",
              "synthetic": [], "campus": None}
    for n in a.sizes:
        db, _ = clustered(n, a.dim, rng)
        report["synthetic"].append(bench(db, revisits(db, a.queries, rng), a.probes, a.min_candidates, faiss_on,
                                         "synthetic"))
        del db
    if a.campus_map:
        from visloc_ros.core.localizer import Localizer
        loc = Localizer(a.campus_map)
        db = np.ascontiguousarray(loc.map.latents, dtype=np.float32)
        if a.campus_queries:
            from visloc_ros.core.dataset import read_csv
            qs = read_csv(a.campus_queries)
            queries = np.array([loc.embed(qs.path(i)).latent for i in range(len(qs))], np.float32)
        else:
            queries = revisits(db, min(a.queries, len(db)), rng)
        report["campus"] = bench(db, queries, a.probes, a.min_candidates, faiss_on, "campus")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
