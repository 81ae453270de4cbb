#!/usr/bin/env python3
"""CNN + encoder latency and throughput for every inference backend usable on this machine.

Backends tried: onnxruntime-cpu always; onnxruntime-gpu when onnxruntime-gpu provides CUDA/TensorRT execution
providers; tensorrt when `tensorrt` + `pycuda` import and a GPU is present. Batch 1 and batch N.

    python benchmarks/bench_backends.py --map MAPDIR [--batch 8] [--n 100] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from visloc_ros.core.backends import OnnxRuntimeBackend, ort_gpu_providers
from visloc_ros.core.descriptor import CnnDescriptor, default_cnn_path
from visloc_ros.core.synthetic import draw_scene
from visloc_ros.core.model_files import cnn_profile, encoder_profile
from visloc_ros.core.trt_backend import TensorRTBackend, tensorrt_missing


def timeit(fn, x, n):
    for _ in range(5):
        fn(x)
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(x)
        t.append((time.perf_counter() - t0) * 1e3)
    return np.array(t)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", required=True, help="a map folder (its encoder.onnx is benchmarked)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    cnn, enc = default_cnn_path(), Path(a.map) / "encoder.onnx"
    img1 = draw_scene(7)[None]
    imgs = np.stack([draw_scene(7 + i) for i in range(a.batch)])
    backends = {"onnxruntime-cpu": lambda m, p: OnnxRuntimeBackend(m, a.threads)}
    gpu = ort_gpu_providers()
    if gpu:
        backends["onnxruntime-gpu"] = lambda m, p: OnnxRuntimeBackend(m, a.threads, gpu + ["CPUExecutionProvider"])
    why = tensorrt_missing()
    if why is None:
        backends["tensorrt-fp16"] = lambda m, p: TensorRTBackend(m, p, fp16=True)
    else:
        print(f"tensorrt skipped: needs {why}")
    rep = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs",
           "gpu_providers": gpu, "results": {}}
    for name, make in backends.items():
        c = make(cnn, cnn_profile(320, 240, max(a.batch, 1)))
        d = CnnDescriptor(cnn, _backend=c).batch(imgs)  # the global part of the CNN's output feeds the encoder
        e = make(enc, encoder_profile(d.shape[1], max(a.batch, 64)))
        r = {}
        for label, fn, x in (("cnn_b1", c.run, img1), (f"cnn_b{a.batch}", c.run, imgs),
                             ("encoder_b1", e.run, d[:1]), (f"encoder_b{a.batch}", e.run, d)):
            t = timeit(fn, x, a.n)
            r[label] = {"p50_ms": round(float(np.percentile(t, 50)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3),
                        "images_per_s": round(len(x) * 1e3 / float(np.median(t)), 1)}
            print(f"{name:>16} {label:>11}: p50 {r[label]['p50_ms']:8.3f} ms  p99 {r[label]['p99_ms']:8.3f} ms  "
                  f"{r[label]['images_per_s']:8.1f} images/s")
        rep["results"][name] = r
        c.close()
        e.close()
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=2))
    return rep


if __name__ == "__main__":
    main()
