"""Procedural textures (RGB uint8) for the generated worlds, drawn with OpenCV from a seeded generator.

Each family has a small pool of base looks (what makes a tunnel or a corridor repetitive) and per-instance
detail (stains, cracks, tags, posters, numbers: what makes one stretch recognisable).
"""
from __future__ import annotations

import cv2
import numpy as np

_CHARS = list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789")


def _noise(rng: np.random.Generator, h: int, w: int, scale: float, amp: float) -> np.ndarray:
    """Smooth value noise in [-amp, amp] with features about ``scale`` pixels wide."""
    sh, sw = max(2, int(h / scale)), max(2, int(w / scale))
    n = cv2.resize(rng.uniform(-1, 1, (sh, sw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(n, -1, 1) * amp


def _grain(rng: np.random.Generator, img: np.ndarray, amp: float) -> np.ndarray:
    g = _noise(rng, *img.shape[:2], 24, amp * 0.6) + rng.normal(0, amp * 0.4, img.shape[:2]).astype(np.float32)
    return np.clip(img.astype(np.float32) + g[..., None], 0, 255).astype(np.uint8)


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float, color, thick: int = 2) -> None:
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in color), thick, cv2.LINE_AA)


def _tag(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_CHARS, int(rng.integers(2, 5))))


def concrete_wall(rng: np.random.Generator, base: int, w: int = 256, h: int = 320) -> np.ndarray:
    """A tunnel wall segment: concrete from pool look ``base`` (tint, painted band, panel joints) with unique
    stains, drips, cracks and now and then a tag or a patch."""
    looks = [((128, 126, 120), (235, 235, 225)), ((118, 120, 124), (230, 200, 40)), ((135, 130, 118), (240, 240, 240)),
             ((110, 112, 110), (60, 120, 200)), ((125, 122, 128), (235, 235, 225))]
    tint, band = looks[base % len(looks)]
    img = np.empty((h, w, 3), np.uint8)
    img[:] = tint
    img = _grain(rng, img, 14)
    band_top = int(h * (0.70 + 0.02 * (base % 2)))
    img[band_top:] = (0.75 * np.array(band) + 0.25 * img[band_top:]).astype(np.uint8)
    cv2.line(img, (0, band_top), (w, band_top), (40, 40, 40), 2)
    for x in (1, w - 2):  # panel joints at the segment ends
        cv2.line(img, (x, 0), (x, h), (55, 55, 55), 3)
    cv2.line(img, (0, h // 3), (w, h // 3), (90, 90, 90), 1)
    for _ in range(int(rng.integers(2, 7))):  # stains
        c = (int(rng.integers(0, w)), int(rng.integers(0, band_top)))
        ax = (int(rng.integers(8, 50)), int(rng.integers(6, 40)))
        over = img.copy()
        cv2.ellipse(over, c, ax, float(rng.uniform(0, 180)), 0, 360, tuple(int(v) for v in rng.integers(30, 90, 3)), -1)
        img = cv2.addWeighted(img, 0.55, cv2.GaussianBlur(over, (0, 0), 4), 0.45, 0)
    for _ in range(int(rng.integers(0, 6))):  # drips from the top
        x, ln = int(rng.integers(0, w)), int(rng.integers(30, h // 2))
        cv2.line(img, (x, 0), (x + int(rng.integers(-4, 5)), ln), (70, 68, 60), int(rng.integers(2, 6)))
    for _ in range(int(rng.integers(0, 3))):  # cracks
        p = np.array([rng.integers(0, w), rng.integers(0, band_top)], float)
        pts = [p.copy()]
        for _ in range(int(rng.integers(4, 10))):
            p += rng.normal(0, 10, 2) + np.array([0, 8])
            pts.append(p.copy())
        cv2.polylines(img, [np.array(pts, np.int32)], False, (35, 35, 35), 1, cv2.LINE_AA)
    if rng.random() < 0.25:  # a tag
        _text(img, _tag(rng), (int(rng.integers(0, w // 2)), int(rng.integers(band_top - 60, band_top - 5))),
              float(rng.uniform(1.0, 2.0)), rng.integers(0, 256, 3), int(rng.integers(3, 6)))
    if rng.random() < 0.2:  # a repaired patch
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, band_top - 60))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(30, 90)), y + int(rng.integers(30, 70))),
                      tuple(int(v) for v in np.array(tint) + rng.integers(-25, 25, 3)), -1)
    return img


def asphalt(rng: np.random.Generator, w: int = 256, h: int = 256) -> np.ndarray:
    img = np.full((h, w, 3), 62, np.uint8)
    img = _grain(rng, img, 18)
    for _ in range(12):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, c, int(rng.integers(10, 40)), (48, 48, 50), -1)
    return cv2.GaussianBlur(img, (3, 3), 0)


def plain(rng: np.random.Generator, color, w: int = 128, h: int = 128, grain: float = 10) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = color
    return _grain(rng, img, grain)


def sign(text: str, fg=(20, 20, 20), bg=(240, 240, 240), w: int = 256, h: int = 128, border=None) -> np.ndarray:
    """A flat sign with centred text (distance markers, niche numbers, room plates, exits)."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    if border is not None:
        cv2.rectangle(img, (4, 4), (w - 5, h - 5), border, 6)
    scale = min(3.0, 0.85 * w / max(1, 22 * len(text)))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 4)
    _text(img, text, ((w - tw) // 2, (h + th) // 2), scale, fg, 4)
    # flipped vertically; on the faces that look into the tunnel from the right wall the text then renders rotated
    # by 180 degrees (seen in renders): still a distinct mark, but not readable; orienting it per face is open
    return np.ascontiguousarray(img[::-1])


def painted_wall(rng: np.random.Generator, base: int, w: int = 256, h: int = 192) -> np.ndarray:
    """A corridor wall segment: paint from a small pool, skirting, a rail, and unique posters/boards."""
    paints = [(214, 210, 196), (196, 206, 214), (222, 214, 180), (200, 214, 196), (230, 228, 224), (210, 196, 200)]
    img = plain(rng, paints[base % len(paints)], w, h, 6)
    cv2.rectangle(img, (0, h - 10), (w, h), (70, 60, 50), -1)  # skirting
    if base % 3 == 0:
        cv2.rectangle(img, (0, int(h * 0.55)), (w, int(h * 0.58)), (120, 110, 100), -1)  # chair rail
    for _ in range(int(rng.integers(0, 3))):  # posters, notices, boards
        pw, ph = int(rng.integers(24, 80)), int(rng.integers(30, 70))
        x, y = int(rng.integers(4, max(5, w - pw - 4))), int(rng.integers(20, max(21, int(h * 0.55) - ph)))
        kind = rng.integers(0, 3)
        col = tuple(int(v) for v in rng.integers(20, 256, 3))
        if kind == 0:  # poster: colour blocks and a headline
            cv2.rectangle(img, (x, y), (x + pw, y + ph), col, -1)
            cv2.rectangle(img, (x + 3, y + ph // 2), (x + pw - 3, y + ph - 3), tuple(255 - c for c in col), -1)
            _text(img, _tag(rng), (x + 2, y + ph // 2 - 4), 0.5, (255, 255, 255), 1)
        elif kind == 1:  # cork board with notes
            cv2.rectangle(img, (x, y), (x + pw, y + ph), (150, 110, 70), -1)
            for _ in range(int(rng.integers(3, 8))):
                nx, ny = x + int(rng.integers(0, max(1, pw - 14))), y + int(rng.integers(0, max(1, ph - 14)))
                cv2.rectangle(img, (nx, ny), (nx + 12, ny + 14), tuple(int(v) for v in rng.integers(150, 256, 3)), -1)
        else:  # framed picture
            cv2.rectangle(img, (x, y), (x + pw, y + ph), (40, 40, 40), 3)
            cv2.circle(img, (x + pw // 2, y + ph // 2), min(pw, ph) // 3, col, -1)
    return img


def floor_tiles(rng: np.random.Generator, w: int = 256, h: int = 256, tile: int = 64) -> np.ndarray:
    img = plain(rng, (150, 148, 140), w, h, 8)
    for k in range(0, w, tile):
        cv2.line(img, (k, 0), (k, h), (110, 108, 100), 2)
        cv2.line(img, (0, k), (w, k), (110, 108, 100), 2)
    return img


def door(rng: np.random.Generator, base: int, w: int = 96, h: int = 192) -> np.ndarray:
    woods = [(150, 100, 60), (120, 80, 50), (170, 130, 90), (90, 110, 140), (160, 60, 50)]
    img = plain(rng, woods[base % len(woods)], w, h, 10)
    cv2.rectangle(img, (8, 8), (w - 9, h - 9), (60, 45, 30), 2)
    if base % 2:
        cv2.rectangle(img, (w // 4, 20), (3 * w // 4, 70), (170, 200, 210), -1)  # a window pane
    return img


def shelf(rng: np.random.Generator, w: int = 128, h: int = 128) -> np.ndarray:
    img = plain(rng, (120, 90, 60), w, h, 8)
    for r in range(4):
        y0 = 6 + r * 30
        x = 4
        while x < w - 8:
            bw = int(rng.integers(4, 12))
            cv2.rectangle(img, (x, y0), (x + bw, y0 + 24), tuple(int(v) for v in rng.integers(30, 230, 3)), -1)
            x += bw + 1
        cv2.line(img, (0, y0 + 26), (w, y0 + 26), (70, 50, 30), 3)
    return img
