"""Photometric degradations that imitate night and poor light, for calibration and training."""
from __future__ import annotations

import cv2
import numpy as np


def night_like(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darken (gamma + gain), add a colour cast, blur and sensor noise; random strength per call."""
    x = rgb.astype(np.float32) / 255.0
    gamma = rng.uniform(1.5, 2.6)
    gain = rng.uniform(0.25, 0.6)
    cast = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    x = gain * np.power(x, gamma) * cast[None, None]
    if rng.random() < 0.5:
        k = int(rng.choice([3, 5]))
        x = cv2.GaussianBlur(x, (k, k), 0)
    x = x + rng.normal(0.0, rng.uniform(0.005, 0.03), size=x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
