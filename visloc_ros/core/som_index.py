"""Self-organising-map index over the map's latents (MiniSom for training).

Every place is filed under its best-matching SOM cell. A query ranks the cells by distance to their
codebook vectors, probes the best ones (at least ``n_probe`` cells and ``min_candidates`` places), and
re-scores only those places exactly (cosine similarity of L2-normalised latents). Cells double as the
map's "zones" for RViz and the status message.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def grid_shape(n_places: int) -> tuple[int, int]:
    """SOM grid from the map size: about 5*sqrt(N) units (Vesanto's rule), square, at least 2x2."""
    side = int(np.clip(round(np.sqrt(5.0 * np.sqrt(max(n_places, 1)))), 2, 128))
    return side, side


def train_som(latents: np.ndarray, shape: tuple[int, int] | None = None, iterations: int | None = None,
              seed: int = 0, max_samples: int = 50_000) -> np.ndarray:
    """Train a SOM on (N, D) latents (a random subset of at most ``max_samples``); returns the codebook
    (rows, cols, D) float32."""
    from minisom import MiniSom

    rows, cols = shape or grid_shape(len(latents))
    if len(latents) > max_samples:
        latents = latents[np.sort(np.random.default_rng(seed).choice(len(latents), max_samples, replace=False))]
    data = np.ascontiguousarray(latents, dtype=np.float64)
    # the neighbourhood shrinks to one cell by the end: a sharp codebook files revisits of a place under
    # the same cells (MiniSom's default asymptotic decay leaves it ~rows/12 wide, and agreement with
    # exhaustive search at 100k places drops from 100 % to 88 % at 8 probes: benchmarks/bench_index.py)
    som = MiniSom(rows, cols, data.shape[1], sigma=max(rows, cols) / 4.0, learning_rate=0.5,
                  neighborhood_function="gaussian", random_seed=seed, sigma_decay_function="inverse_decay_to_one")
    if len(data) >= 2:
        som.pca_weights_init(data)
    else:
        som.random_weights_init(data)
    its = iterations or int(np.clip(20 * rows * cols, 2000, 50000))
    som.train(data, its, random_order=True)
    return som.get_weights().astype(np.float32)


@dataclass
class Hits:
    ids: np.ndarray       # (k,) place ids (row numbers), best first
    scores: np.ndarray    # (k,) cosine similarity
    cells: np.ndarray     # (p,) probed cells, best first
    n_scored: int         # places scored exactly


class SomIndex:
    """Cell assignment + multi-probe lookup over a (possibly memory-mapped) latent matrix."""

    def __init__(self, codebook: np.ndarray, latents: np.ndarray, cells: np.ndarray | None = None):
        self.shape = codebook.shape[:2]
        self.codebook = np.ascontiguousarray(codebook.reshape(-1, codebook.shape[-1]), dtype=np.float32)
        self._w2 = (self.codebook ** 2).sum(1)
        self.latents = latents
        self.cells = self.assign(latents) if cells is None else np.asarray(cells, dtype=np.int32)
        self._rebuild()

    @property
    def n_cells(self) -> int:
        return self.codebook.shape[0]

    def _rebuild(self) -> None:
        self._order = np.argsort(self.cells, kind="stable").astype(np.int64)
        counts = np.bincount(self.cells, minlength=self.n_cells)
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._counts = counts

    def assign(self, latents: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """Best-matching cell of each latent (chunked, so a million rows fit in memory)."""
        out = np.empty(len(latents), dtype=np.int32)
        for s in range(0, len(latents), chunk):
            z = np.asarray(latents[s:s + chunk], dtype=np.float32)
            out[s:s + chunk] = np.argmin(self._w2[None] - 2.0 * z @ self.codebook.T, axis=1)
        return out

    def add(self, latents: np.ndarray) -> np.ndarray:
        """File new places (appended rows of ``latents``) under their cells; returns their cells."""
        new_cells = self.assign(latents[len(self.cells):])
        self.cells = np.concatenate([self.cells, new_cells])
        self.latents = latents
        self._rebuild()
        return new_cells

    def cell_rc(self, cell: int) -> tuple[int, int]:
        return divmod(int(cell), self.shape[1])

    def query(self, z: np.ndarray, k: int = 10, n_probe: int = 8, min_candidates: int = 64,
              exclude: int | None = None) -> Hits:
        """The ``k`` best places for latent ``z`` among the places of the best cells; ``exclude`` leaves one
        place out (leave-one-out calibration)."""
        d = self._w2 - 2.0 * (self.codebook @ z)
        n_cells = self.n_cells
        # rank enough cells: partial sort of a generous prefix, then grow it only if it is not enough
        m = min(n_cells, max(n_probe * 4, 32))
        while True:
            part = np.argpartition(d, m - 1)[:m] if m < n_cells else np.arange(n_cells)
            ranked = part[np.argsort(d[part], kind="stable")]
            total = np.cumsum(self._counts[ranked])
            need = max(k, min_candidates)
            enough = np.searchsorted(total, need)  # index of the first cell reaching `need`
            p = max(n_probe, int(enough) + 1)
            if p <= len(ranked) or m >= n_cells:
                break
            m = min(n_cells, m * 4)
        cells = ranked[:min(p, len(ranked))]
        starts, ends = self._starts[cells], self._starts[cells + 1]
        cand = np.concatenate([self._order[s:e] for s, e in zip(starts, ends)]) if len(cells) else np.empty(0, np.int64)
        if exclude is not None:
            cand = cand[cand != exclude]
        if cand.size == 0:
            return Hits(np.empty(0, np.int64), np.empty(0, np.float32), cells, 0)
        sims = np.asarray(self.latents[cand], dtype=np.float32) @ z
        kk = min(k, cand.size)
        top = np.argpartition(-sims, kk - 1)[:kk] if kk < cand.size else np.arange(cand.size)
        top = top[np.argsort(-sims[top], kind="stable")]
        return Hits(cand[top], sims[top], cells, int(cand.size))


def exhaustive_query(latents: np.ndarray, z: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Reference search over every place (for tests and benchmarks)."""
    sims = np.asarray(latents, dtype=np.float32) @ z
    kk = min(k, len(sims))
    top = np.argpartition(-sims, kk - 1)[:kk]
    top = top[np.argsort(-sims[top], kind="stable")]
    return top, sims[top]
