"""Candidate verification: re-rank a frame's best places by how well its local CNN features find theirs.

The global and regional descriptors pool a frame into one vector each, the regional one in a fixed 4x4 grid: a
place seen from a step aside, or with its doorway in another part of the frame, pools differently. The local
features (:mod:`.descriptor`: mid-level CNN features on a coarse grid, about 70 positions per frame) keep what
each part of the frame shows without fixing where. A candidate place is scored by the chamfer similarity: for
each of the frame's positions the best-matching position of the place, averaged over the frame's positions.
Features are compared centred on the map's mean (what every place shares, sky, floor, vignetting, says nothing).

The chamfer scores of the candidates are z-scored among them and added to their (fused) similarities at a
per-map weight, in units of those similarities' spread among the candidates; the places are re-ranked by the
result, which is what the pose consensus then reads (the sequence filters take only the verified order of their
own few best places, :meth:`.map_filter.MapFilter._verified`). This is the verification step of
that paid for its cost (docs/accuracy.md, "Methods tried": OpenCV keypoints + USAC did not, on these images).
"""
from __future__ import annotations

import numpy as np


def local_mean(local: np.ndarray, sample: int = 2000) -> np.ndarray:
    """A map's mean local feature (C,) over every position of its places (a fixed sample of ``sample`` places on
    larger maps)."""
    n = len(local)
    rows = np.sort(np.random.default_rng(0).choice(n, sample, replace=False)) if n > sample else slice(None)
    return np.asarray(local[rows], np.float32).reshape(-1, local.shape[-1]).mean(0)


def normalised(local: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Local features (..., P, C) centred on ``mean`` and L2-normalised per position, float32."""
    x = np.asarray(local, np.float32) - mean
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def chamfer(query: np.ndarray, places: np.ndarray) -> np.ndarray:
    """Chamfer similarity (K,) of a frame's normalised local features (P, C) to K places' (K, P', C): for each of
    the frame's positions the best cosine among a place's positions, averaged over the frame's positions."""
    s = np.matmul(places, query.T)  # (K, P', P)
    return s.max(axis=1).mean(axis=1)


def chamfer_to(frame: np.ndarray, places: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """:func:`chamfer` of a frame's raw local features (P, C) to K places' (K, P', C), both centred on the map's
    ``mean`` and normalised (:func:`normalised`): what the localizer and the build's calibration score candidates by."""
    return chamfer(normalised(frame, mean), normalised(places, mean))


def rerank(scores: np.ndarray, chamfer_scores: np.ndarray, weight: float) -> np.ndarray:
    """The candidates' scores (K,) with ``weight`` x the z-score of their chamfer similarities among them added, in
    units of the scores' own spread among the candidates (so the weight means the same on every map)."""
    s = np.asarray(scores, np.float64)
    c = np.asarray(chamfer_scores, np.float64)
    if weight <= 0 or len(s) < 2:
        return s.astype(np.float32)
    z = (c - c.mean()) / max(c.std(), 1e-9)
    return (s + weight * max(s.std(), 1e-6) * z).astype(np.float32)


def reranked(scores: np.ndarray, chamfer_scores: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rerank`, then the candidates' order best first (indices into them; stable: ties keep their given
    order) and their re-ranked scores in that order."""
    s = rerank(scores, chamfer_scores, weight)
    order = np.argsort(-s, kind="stable")
    return order, s[order]
