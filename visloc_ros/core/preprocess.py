"""Decode camera buffers and files to RGB, resize for the CNN, and optionally enhance low light.

Encodings follow ``sensor_msgs/image_encodings``: rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1, 8UC3,
16UC1, bayer_{rggb,bggr,gbrg,grbg}{8,16}, yuv422 (UYVY), yuv422_yuy2 (YUYV). Compressed images (JPEG, PNG,
anything OpenCV reads) decode with :func:`decode_compressed`. Every failure is an :class:`ImageError`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

# OpenCV names Bayer patterns after the second row's first two pixels; these codes give RGB for the
# ROS pattern named after the first row (checked against a synthetic mosaic in test_preprocess.py).
_BAYER = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
# encoding -> (channels, bytes per channel)
_LAYOUT = {
    "rgb8": (3, 1), "bgr8": (3, 1), "8UC3": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1),
    "mono8": (1, 1), "8UC1": (1, 1), "mono16": (1, 2), "16UC1": (1, 2),
    "yuv422": (2, 1), "uyvy": (2, 1), "yuv422_yuy2": (2, 1), "yuyv": (2, 1),
}
for _p in _BAYER:
    _LAYOUT[f"bayer_{_p}8"] = (1, 1)
    _LAYOUT[f"bayer_{_p}16"] = (1, 2)

SUPPORTED_ENCODINGS = tuple(sorted(_LAYOUT))


def decode_raw(data: bytes | bytearray | memoryview | np.ndarray, width: int, height: int, encoding: str,
               step: int = 0, is_bigendian: bool = False) -> np.ndarray:
    """A raw ``sensor_msgs/Image`` buffer -> HxWx3 uint8 RGB (a new array; ``data`` is not kept)."""
    enc = encoding.strip()
    if enc not in _LAYOUT:
        raise ImageError(f"unknown image encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if width <= 0 or height <= 0:
        raise ImageError(f"image has zero size ({width}x{height})")
    channels, depth = _LAYOUT[enc]
    row = width * channels * depth
    step = step or row
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    if step < row:
        raise ImageError(f"step {step} is smaller than a {enc} row of width {width} ({row} bytes)")
    if buf.size < step * (height - 1) + row:
        raise ImageError(f"buffer of {buf.size} bytes is too small for {width}x{height} {enc} with step {step}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    if depth == 2:
        dt = np.dtype(">u2" if is_bigendian else "<u2")
        img = np.ascontiguousarray(rows).view(dt).reshape(height, width, channels).astype(np.uint16)
    else:
        img = np.ascontiguousarray(rows).reshape(height, width, channels)

    if enc.startswith("bayer_"):
        if depth == 2:
            img = (img >> 8).astype(np.uint8)
        return cv2.cvtColor(img[..., 0], _BAYER[enc[6:10]])
    if depth == 2:  # mono16 / 16UC1: scale the used range to 8 bits, robust to 10/12-bit sensors
        m = img[..., 0].astype(np.float32)
        hi = float(np.percentile(m, 99.5)) or 1.0
        img = np.clip(m * (255.0 / hi), 0, 255).astype(np.uint8)[..., None]
    if channels == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2RGB)
    if enc in ("rgb8",):
        return img.copy()
    if enc in ("bgr8", "8UC3"):
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if enc == "rgba8":
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
    if enc == "bgra8":
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if enc in ("yuv422", "uyvy"):
        return cv2.cvtColor(img, cv2.COLOR_YUV2RGB_UYVY)
    return cv2.cvtColor(img, cv2.COLOR_YUV2RGB_YUYV)


def decode_compressed(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """JPEG / PNG / any OpenCV-readable bytes -> HxWx3 uint8 RGB."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.size == 0:
        raise ImageError("compressed image is empty")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"cannot decode compressed image ({buf.size} bytes): corrupt or unknown format")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_image(path: str | Path) -> np.ndarray:
    """An image file -> HxWx3 uint8 RGB."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read image {p}: {e.strerror or e}") from None
    try:
        return decode_compressed(data)
    except ImageError as e:
        raise ImageError(f"{p}: {e}") from None


def target_size(width: int, height: int, long_side: int, short_side: int) -> tuple[int, int]:
    """(w, h) for the CNN: ``long_side`` x ``short_side``, oriented like the input (portrait stays portrait)."""
    return (long_side, short_side) if width >= height else (short_side, long_side)


def resize(rgb: np.ndarray, long_side: int = 320, short_side: int = 240) -> np.ndarray:
    """Resize to the CNN input size (area interpolation when shrinking)."""
    h, w = rgb.shape[:2]
    tw, th = target_size(w, h, long_side, short_side)
    if (w, h) == (tw, th):
        return rgb
    interp = cv2.INTER_AREA if tw * th < w * h else cv2.INTER_LINEAR
    return cv2.resize(rgb, (tw, th), interpolation=interp)


def mean_luminance(rgb: np.ndarray) -> float:
    """Mean luma in [0, 1] (on a subsample: cheap)."""
    return float(cv2.cvtColor(rgb[::4, ::4], cv2.COLOR_RGB2GRAY).mean()) / 255.0


def illumination_condition(rgb: np.ndarray, night_below: float = 0.12, dusk_below: float = 0.3) -> str:
    """'day', 'dusk' or 'night' from the mean luminance of the raw frame."""
    m = mean_luminance(rgb)
    return "night" if m < night_below else "dusk" if m < dusk_below else "day"


@dataclass(frozen=True)
class LowLight:
    """Low-light enhancement: CLAHE on the L channel of Lab, then a gamma that lifts dark frames."""

    clahe_clip: float = 2.0
    clahe_grid: int = 8
    target_mean: float = 0.45
    max_gamma_boost: float = 3.0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=self.clahe_clip, tileGridSize=(self.clahe_grid, self.clahe_grid))
        lab[..., 0] = clahe.apply(lab[..., 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        m = max(mean_luminance(out), 1e-3)
        if m < self.target_mean:  # auto gamma: map the mean to target_mean, bounded
            gamma = max(np.log(self.target_mean) / np.log(m), 1.0 / self.max_gamma_boost)
            lut = (255.0 * (np.arange(256) / 255.0) ** gamma).clip(0, 255).astype(np.uint8)
            out = cv2.LUT(out, lut)
        return out


def prepare(rgb: np.ndarray, low_light: str, size: tuple[int, int], enhancer: LowLight | None = None
            ) -> tuple[np.ndarray, str]:
    """Raw RGB -> CNN input: low-light enhancement as configured (``on``, ``off``, ``auto`` = frames that are
    not 'day'), resized to ``size`` (long, short side). Also returns the illumination condition. The map
    build and the localizer both go through here, so training and queries see the same input."""
    cond = illumination_condition(rgb)
    if low_light == "on" or (low_light == "auto" and cond != "day"):
        rgb = (enhancer or LowLight())(rgb)
    return resize(rgb, *size), cond
