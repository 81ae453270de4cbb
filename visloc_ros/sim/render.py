"""Offscreen rendering of a :class:`~visloc_ros.sim.worlds.World` with MuJoCo (software OSMesa by default,
``MUJOCO_GL=egl`` for a GPU), under a lighting condition, through a camera sensor model.

Conditions: ``lit`` (every lamp on), ``dim`` (lamps at a third, a share of them dead, fluorescent flicker),
``night`` (lamps off; the robot's headlight cone, whose supply flickers). The sensor: auto-exposure with a
gain limit, signal-dependent shot noise plus read noise scaled by the gain, 8-bit quantisation. Only the
lamps nearest the camera are switched on as lights (OpenGL's fixed pipeline has 8), all fixtures glow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from transforms3d.euler import euler2quat

from ..core.errors import VislocError
from .worlds import World


@dataclass(frozen=True)
class Lighting:
    name: str
    lamp_gain: float          # lamp intensity (0 = off)
    lamp_dead: float          # share of lamps that do not work
    headlight: float          # headlight intensity (0 = off)
    ambient: float
    flicker: float            # relative per-frame intensity jitter of the light sources
    max_gain: float           # auto-exposure gain limit
    read_noise: float         # DN (of 255) at gain 1
    shot_noise: float         # DN per sqrt(DN) at gain 1
    daylight: float           # brightness of daylight at tunnel portals (0 = night outside)


CONDITIONS = {
    "lit": Lighting("lit", 1.0, 0.0, 0.0, 0.30, 0.0, 2.0, 0.8, 0.15, 1.0),
    "dim": Lighting("dim", 0.35, 0.3, 0.0, 0.08, 0.15, 6.0, 1.2, 0.3, 0.3),
    "night": Lighting("night", 0.0, 1.0, 0.9, 0.01, 0.08, 8.0, 1.5, 0.35, 0.0),
}


def lighting(name: str) -> Lighting:
    if name not in CONDITIONS:
        raise VislocError(f"unknown lighting condition {name!r} (choose from {', '.join(CONDITIONS)})")
    return CONDITIONS[name]


def _import_mujoco():
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    try:
        import mujoco
    except ImportError as e:
        raise VislocError(f"rendering needs the mujoco package (pip install mujoco): {e}") from None
    return mujoco


class Camera:
    """Renders RGB frames (uint8) of ``world`` from base_link poses under ``condition``."""

    def __init__(self, world: World, condition: str, width: int = 320, height: int = 240, seed: int = 0,
                 max_lights: int = 6):
        mujoco = _import_mujoco()
        self.world, self.light = world, lighting(condition)
        self.rng = np.random.default_rng(seed)
        self.width, self.height, self.max_lights = width, height, max_lights
        try:
            self.model = mujoco.MjModel.from_xml_string(world.xml, world.assets)
            self.data = mujoco.MjData(self.model)
            self.renderer = mujoco.Renderer(self.model, height, width)
        except Exception as e:  # no OSMesa/EGL library, bad context
            raise VislocError(f"cannot render with MuJoCo (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {e}; "
                              f"software rendering needs libOSMesa (apt-get install libosmesa6)") from None
        self._mj = mujoco
        m = self.model
        self.lamp_mat = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_MATERIAL, a) for a, _, _ in world.lamps], int)
        self.lamp_light = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_LIGHT, b) for _, b, _ in world.lamps], int)
        self.lamp_pos = np.array([p for _, _, p in world.lamps]).reshape(-1, 3)
        self.head = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_LIGHT, "headlight")
        self.lamp_diffuse = m.light_diffuse[self.lamp_light].copy()
        self.head_diffuse = m.light_diffuse[self.head].copy()
        self.lamp_emission = m.mat_emission[self.lamp_mat].copy()
        L = self.light
        for name in world.daylight:
            m.mat_emission[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_MATERIAL, name)] *= L.daylight
        self.alive = np.random.default_rng(world.seed + 7).random(len(world.lamps)) >= L.lamp_dead
        m.vis.headlight.ambient[:] = L.ambient
        m.light_active[self.head] = L.headlight > 0
        self.exposure = 1.0

    def render(self, xyz: np.ndarray, rpy: np.ndarray) -> np.ndarray:
        m, d, L = self.model, self.data, self.light
        d.mocap_pos[0] = xyz
        d.mocap_quat[0] = euler2quat(*rpy, axes="sxyz")
        if len(self.lamp_light):
            on = self.alive & (L.lamp_gain > 0)
            flick = 1.0 + L.flicker * self.rng.standard_normal(len(self.lamp_light))
            gain = np.where(on, L.lamp_gain * np.clip(flick, 0.2, None), 0.0)
            m.mat_emission[self.lamp_mat] = self.lamp_emission * gain
            dist = np.linalg.norm(self.lamp_pos - xyz, axis=1)
            dist[~on] = np.inf
            near = np.argsort(dist)[: self.max_lights]
            m.light_active[self.lamp_light] = 0
            m.light_active[self.lamp_light[near[np.isfinite(dist[near])]]] = 1
            m.light_diffuse[self.lamp_light] = self.lamp_diffuse * gain[:, None]
        if L.headlight > 0:
            m.light_diffuse[self.head] = self.head_diffuse * L.headlight * max(0.2, 1.0 + L.flicker * self.rng.standard_normal())
        self._mj.mj_forward(m, d)
        self.renderer.update_scene(d, camera="camera")
        return self._sensor(self.renderer.render())

    def _sensor(self, img: np.ndarray) -> np.ndarray:
        """Auto-exposure (smoothed, gain-limited), shot and read noise, quantisation."""
        L = self.light
        x = img.astype(np.float32)
        mean = float(x.mean()) + 1e-3
        target = float(np.clip(110.0 / mean, 0.5, L.max_gain))
        self.exposure += 0.5 * (target - self.exposure)
        x *= self.exposure
        sigma = np.sqrt((L.shot_noise ** 2) * self.exposure * np.maximum(x, 0) + (L.read_noise * self.exposure) ** 2)
        x += sigma * self.rng.standard_normal(x.shape, dtype=np.float32)
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)

    def close(self) -> None:
        if getattr(self, "renderer", None) is not None:
            self.renderer.close()
            self.renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
