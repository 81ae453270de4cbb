"""Per-map autoencoder: compresses the map's CNN descriptors to an L2-normalised latent.

Trained at map build (torch; on a CUDA GPU when torch sees one, else on the CPU; a fixed number of
gradient steps so time does not grow with the map); only the encoder half is exported to ONNX
(``encoder.onnx`` in the map folder) and run at query time by any backend. Loss: cosine reconstruction of the
(normalised) descriptor, plus, when the map's positions and degraded (night/weather-like) versions of its images
are given, a multi-similarity metric loss (Wang et al., CVPR 2019) on the map's own geometry: a degraded image
must land near the clean images taken within ``pos_spacings`` place spacings of it and away from those beyond
``neg_spacings``, hardest pairs weighted most.

The encoder is linear and starts from the map's principal directions (PCA); the decoder is an MLP.
A small map has fewer images than latent dimensions: a randomly initialised encoder would answer
directions the map never showed with noise, and lose a few points of recall on the corridor and
campus sets (measured); the PCA start maps those directions to zero.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Backend, create_backend

ENCODER_FILE = "encoder.onnx"


@dataclass(frozen=True)
class EncoderTraining:
    latent_dim: int = 256
    hidden_dim: int = 512    # decoder
    steps: int = 600
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    metric_weight: float = 0.0    # 0 = plain autoencoder (the default: see docs/accuracy.md)
    degraded_per_image: int = 2   # degraded copies of each map image described for the metric term
    pos_spacings: float = 2.0     # positives: clean map images within this many place spacings
    neg_spacings: float = 5.0     # negatives: beyond this many
    ms_alpha: float = 2.0
    ms_beta: float = 40.0
    ms_lambda: float = 0.5
    seed: int = 0
    device: str = "auto"          # auto (CUDA when torch sees a GPU, else CPU) | cpu | cuda | cuda:N


def train_device(name: str = "auto"):
    """The torch device to train on: ``auto`` takes the first CUDA GPU when torch sees one, else the CPU.

    Asking for ``cuda`` where torch sees no GPU (a CPU build of torch, no driver) is an error, not a silent
    fallback: whoever asked for the GPU should know it was not used.
    """
    import torch

    from .errors import MapError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise MapError(f"unknown training device {name!r} (use auto, cpu, cuda or cuda:N)")
    if dev.type == "cuda":
        why = ("this torch is a CPU build" if torch.version.cuda is None else "torch sees no CUDA GPU") \
            if not torch.cuda.is_available() else None
        if why is None and (dev.index or 0) >= torch.cuda.device_count():
            why = f"torch sees {torch.cuda.device_count()} CUDA GPU(s)"
        if why:
            raise MapError(f"cannot train the encoder on {name}: {why} (use --train-device cpu or auto)")
    return dev


def device_label(dev) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``: what ``map.yaml`` records."""
    import torch

    if dev.type != "cuda":
        return "cpu"
    i = dev.index or 0
    return f"cuda:{i} ({torch.cuda.get_device_name(i)})"


def _multi_similarity(za, zc, pos, neg, c: EncoderTraining):
    """Multi-similarity loss of anchors ``za`` (B, L) against ``zc`` (M, L) with boolean masks (B, M)."""
    import torch

    s = za @ zc.T
    lam = c.ms_lambda
    p_term = torch.log1p((torch.exp(-c.ms_alpha * (s - lam)) * pos).sum(1)) / c.ms_alpha
    n_term = torch.log1p((torch.exp(c.ms_beta * (s - lam)) * neg).sum(1)) / c.ms_beta
    keep = pos.any(1) & neg.any(1)
    return (p_term + n_term)[keep].mean() if bool(keep.any()) else s.sum() * 0.0


def train_encoder(descriptors: np.ndarray, out_path: str | Path, conf: EncoderTraining = EncoderTraining(),
                  progress=None, positions: np.ndarray | None = None, spacing: float | None = None,
                  degraded: np.ndarray | None = None) -> dict:
    """Train the autoencoder on ``descriptors`` (N, D) and export its encoder to ``out_path`` (ONNX).

    With ``positions`` (N, 2), ``spacing`` and ``degraded`` (N, K, D) descriptors of degraded copies of the
    same images, the metric term is added. Returns a summary for ``map.yaml``.
    ``progress`` is an optional callable ``(steps_done)`` for a progress bar.
    """
    import torch

    t0 = time.perf_counter()
    dev = train_device(conf.device)
    torch.manual_seed(conf.seed)
    rng = np.random.default_rng(conf.seed)
    x = torch.from_numpy(np.ascontiguousarray(descriptors, dtype=np.float32)).to(dev)
    n, d = x.shape
    latent = min(conf.latent_dim, d)

    def ix(a):  # numpy indices -> a tensor on the training device
        return torch.from_numpy(np.asarray(a)).to(dev)

    enc = torch.nn.Linear(d, latent).to(dev)
    with torch.no_grad():  # PCA start: rows = principal directions, centred on the map's mean
        mu = x.mean(0)
        _, _, vt = torch.linalg.svd(x - mu, full_matrices=False)
        r = min(latent, max(n - 1, 1), vt.shape[0])
        w = torch.zeros(latent, d, device=dev)
        w[:r] = vt[:r]
        enc.weight.copy_(w)
        enc.bias.copy_(-(w @ mu))
    dec = torch.nn.Sequential(torch.nn.Linear(latent, conf.hidden_dim), torch.nn.GELU(),
                              torch.nn.Linear(conf.hidden_dim, d)).to(dev)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.AdamW(params, lr=conf.lr, weight_decay=conf.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, conf.steps)
    bs = min(conf.batch_size, n)
    metric = conf.metric_weight > 0 and positions is not None and degraded is not None and spacing and n >= 8
    if metric:
        xa = torch.from_numpy(np.ascontiguousarray(degraded, dtype=np.float32)).to(dev)
        pxy = np.asarray(positions, np.float64)[:, :2]
        r_pos, r_neg = conf.pos_spacings * spacing, conf.neg_spacings * spacing
    for step in range(conf.steps):
        idx = rng.choice(n, bs, replace=False)
        b = x[ix(idx)]
        z = torch.nn.functional.normalize(enc(b), dim=1)
        r = torch.nn.functional.normalize(dec(z), dim=1)
        loss = (1.0 - (r * b).sum(1)).mean()
        if metric:
            half = idx[: bs // 2]
            # a random neighbour within r_pos of each anchor's place, so that the batch holds positives
            near = np.linalg.norm(pxy[half][:, None] - pxy[None], axis=2) <= r_pos
            mates = np.array([rng.choice(np.flatnonzero(row)) for row in near])
            cl = np.concatenate([half, mates])
            d = np.linalg.norm(pxy[half][:, None] - pxy[cl][None], axis=2)
            za = torch.nn.functional.normalize(enc(xa[ix(half), ix(rng.integers(0, xa.shape[1], len(half)))]), dim=1)
            zc = torch.nn.functional.normalize(enc(x[ix(cl)]), dim=1)
            pos, neg = ix(d <= r_pos), ix(d > r_neg)
            # degraded anchors against clean images; clean anchors against their clean neighbours
            zh = zc[: len(half)]
            self_mask = ix(np.equal.outer(half, cl))
            loss = loss + conf.metric_weight * (_multi_similarity(za, zc, pos, neg, conf)
                                                + _multi_similarity(zh, zc, pos & ~self_mask, neg, conf))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(1)
    # read once at the end: reading it every step would wait for the GPU every step
    loss_v = loss.item() if conf.steps > 0 else float("nan")
    with torch.no_grad():
        z = torch.nn.functional.normalize(enc(x), dim=1)
        recon = float((torch.nn.functional.normalize(dec(z), dim=1) * x).sum(1).mean())

    class Export(torch.nn.Module):
        def __init__(self, e):
            super().__init__()
            self.e = e

        def forward(self, descriptor):
            return torch.nn.functional.normalize(self.e(descriptor), dim=1)

    out = Path(out_path)
    tmp = out.with_name(out.name + ".tmp")
    with torch.no_grad():  # exported from the CPU: the ONNX file is the same whatever trained it
        torch.onnx.export(Export(enc.cpu()).eval(), (x[:1].cpu(),), str(tmp), input_names=["descriptor"],
                          output_names=["latent"],
                          dynamic_axes={"descriptor": {0: "batch"}, "latent": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    os.replace(tmp, out)
    return {"latent_dim": latent, "hidden_dim": conf.hidden_dim, "steps": conf.steps, "device": device_label(dev),
            "train_seconds": round(time.perf_counter() - t0, 2),
            "train_loss": round(loss_v, 5), "reconstruction_cosine": round(recon, 5),
            "metric_learning": {"loss": "multi-similarity", "degraded_per_image": int(degraded.shape[1]),
                                "pos_spacings": conf.pos_spacings, "neg_spacings": conf.neg_spacings,
                                "weight": conf.metric_weight} if metric else None}


class Encoder:
    """CNN descriptor(s) -> latent(s), through the map's ``encoder.onnx`` on any backend."""

    def __init__(self, model: str | Path, backend: str = "auto", threads: int = 2, dim: int | None = None,
                 _backend: Backend | None = None):
        from .model_files import encoder_profile

        self.model_path = Path(model)
        profile = encoder_profile(dim) if dim else None
        self.backend = _backend or create_backend(self.model_path, backend, threads, profile)

    def __call__(self, descriptor: np.ndarray) -> np.ndarray:
        return self.batch(descriptor[None])[0]

    def batch(self, descriptors: np.ndarray) -> np.ndarray:
        return self.backend.run(np.ascontiguousarray(descriptors, dtype=np.float32))

    def close(self) -> None:
        self.backend.close()
