#!/usr/bin/env python3
"""Encoder training benchmark: `visloc build-map`'s training stage on each device.

Trains the map's autoencoder (the build-map defaults: 600 steps, latent 256, no metric term) on the CNN
descriptors a built map keeps (``descriptors.npy``), on each device asked for, several times, and reports
the first run (on a GPU it pays the CUDA context and library start-up) and the median of the others. The
encoder's quality is reported too (reconstruction cosine; top-1 agreement of the latents' nearest
neighbours with the first device's), so a fast device that trains a worse encoder shows.

    python benchmarks/bench_training.py --map maps/campus --device cpu cuda --repeat 3 --json OUT.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np

from visloc_ros.core.encoder import Encoder, EncoderTraining, train_encoder


def neighbours(z: np.ndarray) -> np.ndarray:
    s = z @ z.T
    np.fill_diagonal(s, -np.inf)
    return np.argmax(s, axis=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--map", required=True, metavar="MAPDIR", help="a map folder (its descriptors.npy is used)")
    ap.add_argument("--device", nargs="+", default=["cpu"], help="devices to train on (cpu, cuda, cuda:N)")
    ap.add_argument("--repeat", type=int, default=3, help="trainings per device (default 3)")
    ap.add_argument("--steps", type=int, default=EncoderTraining.steps)
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    x = np.load(Path(args.map) / "descriptors.npy").astype(np.float32)
    res = {"map": str(args.map), "descriptors": list(x.shape), "steps": args.steps, "machine": platform.machine(),
           "cpus": torch.get_num_threads(), "torch": torch.__version__, "devices": {}}
    first_nn = None
    with tempfile.TemporaryDirectory() as tmp:
        for dev in args.device:
            runs = []
            for k in range(args.repeat):
                out = Path(tmp) / f"enc_{dev.replace(':', '_')}_{k}.onnx"
                runs.append(train_encoder(x, out, EncoderTraining(steps=args.steps, device=dev)))
            nn = neighbours(Encoder(out, "onnxruntime", 2).batch(x))
            first_nn = nn if first_nn is None else first_nn
            t = [r["train_seconds"] for r in runs]
            res["devices"][dev] = {"label": runs[0]["device"], "first_s": t[0],
                                   "warm_median_s": statistics.median(t[1:]) if len(t) > 1 else None,
                                   "reconstruction_cosine": runs[-1]["reconstruction_cosine"],
                                   "nn_agreement_with_first_device": round(float(np.mean(nn == first_nn)), 3)}
            print(f"{dev:8s} {runs[0]['device']}: first {t[0]:.2f} s, then "
                  f"{', '.join(f'{v:.2f}' for v in t[1:])} s; reconstruction cosine "
                  f"{runs[-1]['reconstruction_cosine']:.4f}; nearest-neighbour agreement with {args.device[0]}: "
                  f"{res['devices'][dev]['nn_agreement_with_first_device']:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
