"""Photometric degradations that imitate night, poor light, weather and season: for training the per-map
encoder and for calibrating the covariance on map images.

``degrade(rgb, rng)`` draws a random composition of: darkening (gain + gamma), headlight falloff (an elliptic
bright region, dark elsewhere), colour cast (sodium, LED, dusk), seasonal colour shift (hue, saturation),
low contrast / haze, blur (defocus or motion), shot + read noise, and the camera's auto-exposure lifting a
dark frame back up (amplifying its noise).
"""
from __future__ import annotations

import cv2
import numpy as np


def _headlight(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.5, 0.8)
    sx, sy = w * rng.uniform(0.2, 0.6), h * rng.uniform(0.2, 0.5)
    floor = rng.uniform(0.02, 0.3)
    return floor + (1 - floor) * np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def degrade(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random night/weather/season version of an RGB uint8 image."""
    x = rgb.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    if rng.random() < 0.3:  # seasonal shift: hue rotation and (de)saturation
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-25, 25)) % 360
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.4, 1.3), 0, 1)
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.random() < 0.3:  # low contrast / haze
        a = rng.uniform(0.4, 0.8)
        x = a * x + (1 - a) * rng.uniform(0.2, 0.8)
    dark = rng.random() < 0.8
    if dark:
        x = rng.uniform(0.15, 0.7) * np.power(x, rng.uniform(1.2, 2.6))
        if rng.random() < 0.5:
            x = x * _headlight(h, w, rng)[..., None]
    x = x * rng.uniform(0.75, 1.25, size=3).astype(np.float32)[None, None]  # colour cast
    if rng.random() < 0.4:
        if rng.random() < 0.5:
            k = int(rng.choice([3, 5]))
            x = cv2.GaussianBlur(x, (k, k), 0)
        else:  # horizontal motion blur
            k = int(rng.choice([3, 5, 7]))
            x = cv2.filter2D(x, -1, np.full((1, k), 1.0 / k, np.float32))
    x = np.clip(x, 0, 1)
    shot, read = rng.uniform(0.0, 0.03), rng.uniform(0.002, 0.02)
    x = x + np.sqrt(shot * shot * x + read * read) * rng.standard_normal(x.shape).astype(np.float32)
    if dark and rng.random() < 0.5:  # auto-exposure brings the mean back up, noise with it
        x = x * min(8.0, rng.uniform(0.25, 0.45) / max(float(x.mean()), 1e-3))
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
