"""Appearance thumbnails: a second, CNN-free way of comparing a frame with the map's places.

A frame is shrunk to a 64x32 grey thumbnail (32x64 for portrait images) and every 8x8 patch is normalised to
zero mean and unit variance (patch normalisation, as in SeqSLAM, Milford & Wyeth 2012). What is left is the
layout of light and dark within each patch: the horizon, the rails, a doorway, which survives a change of
season or exposure that moves a CNN descriptor trained on daylight photographs. The similarity of two
thumbnails is their cosine.

Neither signal wins everywhere (summer map, winter queries: the thumbnails find the place four times as
often as the CNN; a campus at night: they find it a fifth as often), so the two are fused by a per-map weight
(``fuse``), 0 (CNN only) until ``visloc tune`` fits it on a labelled run. Maps store the thumbnails of their
places (``appearance.npy``, float16); maps written before that have none and use the CNN alone.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import ImageError

THUMB_LONG, THUMB_SHORT, PATCH = 64, 32, 8
DIM = THUMB_LONG * THUMB_SHORT


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> the frame's patch-normalised thumbnail, unit length, float32 (``DIM``,)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ImageError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    size = (THUMB_LONG, THUMB_SHORT) if w >= h else (THUMB_SHORT, THUMB_LONG)  # cv2 sizes are (width, height)
    g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    b = g.reshape(size[1] // PATCH, PATCH, size[0] // PATCH, PATCH)
    b = (b - b.mean((1, 3), keepdims=True)) / (b.std((1, 3), keepdims=True) + 1.0)
    v = b.reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def zscore(s: np.ndarray) -> np.ndarray:
    """Similarities as z-scores over the places they were computed for (last axis)."""
    s = np.asarray(s, np.float32)
    return (s - s.mean(-1, keepdims=True)) / np.maximum(s.std(-1, keepdims=True), 1e-6)


def fuse(latent_sims: np.ndarray, appearance_sims: np.ndarray | None, weight: float) -> np.ndarray:
    """CNN similarities fused with thumbnail similarities over the same places: the z-scores added with
    ``weight`` on the thumbnails, scaled back to the CNN's cosine units (same mean and spread as
    ``latent_sims``) so that the pose model's temperature and the ``min_score`` gate keep their meaning."""
    if appearance_sims is None or weight <= 0 or latent_sims.shape[-1] < 2:
        return latent_sims
    z = zscore(latent_sims) + weight * zscore(appearance_sims)
    z /= np.maximum(z.std(-1, keepdims=True), 1e-6)
    return latent_sims.mean(-1, keepdims=True) + latent_sims.std(-1, keepdims=True) * z
