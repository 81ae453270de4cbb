"""What every model file carries, below the descriptor, the encoder and the backends: its checksum (maps and engine
caches record it, so a changed file is never mistaken for the one a map was built with) and the input shapes it
is run at (a TensorRT engine is built for them)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Profile:
    """Min / opt / max shapes of the model's (single) input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def cnn_profile(long_side: int, short_side: int, max_batch: int = 8) -> Profile:
    """NHWC uint8 images: landscape and portrait at the configured size, batch 1..max_batch."""
    return Profile((1, short_side, short_side, 3), (1, short_side, long_side, 3), (max_batch, long_side, long_side, 3))


def encoder_profile(dim: int, max_batch: int = 64) -> Profile:
    return Profile((1, dim), (1, dim), (max_batch, dim))
