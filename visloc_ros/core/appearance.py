"""Appearance thumbnails: a second, CNN-free way of comparing a frame with the map's places.

A frame is shrunk to a 64x32 grey thumbnail (32x64 for portrait images) and every 8x8 patch is normalised to
zero mean and unit variance (patch normalisation, as in SeqSLAM, Milford & Wyeth 2012). What is left is the
layout of light and dark within each patch: the horizon, the rails, a doorway, which survives a change of
season or exposure that moves a CNN descriptor trained on daylight photographs. The similarity of two
thumbnails is their cosine.

Neither signal wins everywhere (summer map, winter queries: the thumbnails find the place three times as
often as the CNN's global descriptor; a campus at night: they find it a fifth as often), so the signals (this
one, and the CNN's regional descriptor, :mod:`.descriptor`) are fused with the global one by per-map weights
(``fuse``), 0 (global descriptor only) until ``visloc tune`` fits them on a labelled run. Maps store the
thumbnails of their places (``appearance.npy``, float16); maps written before that have none.
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


def fuse(latent_sims: np.ndarray, others: list[tuple[np.ndarray | None, float]]) -> np.ndarray:
    """The encoder's similarities fused with other similarities over the same places (``others``: pairs of
    similarities (or None) and weight: the thumbnails', the regional CNN descriptors'): the z-scores added at
    their weights, scaled back to the latents' cosine units (same mean and spread as ``latent_sims``) so that the
    pose model's temperature and the ``min_score`` gate keep their meaning."""
    terms = [(s, w) for s, w in others if s is not None and w > 0]
    if not terms or latent_sims.shape[-1] < 2:
        return latent_sims
    z = zscore(latent_sims) + sum(w * zscore(s) for s, w in terms)
    z /= np.maximum(z.std(-1, keepdims=True), 1e-6)
    return latent_sims.mean(-1, keepdims=True) + latent_sims.std(-1, keepdims=True) * z
