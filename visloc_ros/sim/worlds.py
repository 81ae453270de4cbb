"""GPS-denied worlds as MuJoCo models (MJCF text + in-memory texture assets), deterministic from a seed.

``tunnel``: a long road tunnel: concrete wall segments from a small pool of looks with unique grime, a painted
band, lane markings, sparse ceiling lamps, pipes with brackets and valves, a cable tray, jet fans,
distance signs and numbered emergency niches.
``building``: one floor of an office building: a corridor loop with doorways into furnished rooms, painted
walls with posters and notice boards, numbered doors, fire extinguishers and ceiling panel lights.
``wings``: the same kind of floor built as two look-alike wings: the second half of the loop repeats the first
(the same doors, rooms, furniture and paint; the room numbers and one wall panel in three differ), as in buildings
whose wings were built to one plan; a place recogniser mostly cannot tell the halves apart.

Each world also gives the centreline that trajectories follow and its lamps (geom material + light), which
the renderer switches per frame for the lighting condition.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import WORLDS
from . import textures as tx


@dataclass
class World:
    name: str
    seed: int
    xml: str
    assets: dict[str, bytes]
    centreline: np.ndarray          # (N, 2) polyline the robot drives along
    closed: bool                    # the centreline is a loop
    lamps: list[tuple[str, str, np.ndarray]] = field(default_factory=list)  # (material, light, position)
    daylight: list[str] = field(default_factory=list)  # materials that glow with daylight (tunnel portals)
    camera_height: float = 1.2
    lane_offset: float = 0.0        # lateral offset of the mapping run from the centreline (m, left +)
    fovy: float = 70.0              # vertical field of view of the camera (degrees)


class _Mjcf:
    """Accumulates MJCF assets, geoms and lights."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.assets: dict[str, bytes] = {}
        self.asset_xml: list[str] = []
        self.body: list[str] = []
        self.lamps: list[tuple[str, str, np.ndarray]] = []
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def material(self, img: np.ndarray | None = None, rgba=(1, 1, 1, 1), emission: float = 0.0,
                 repeat: tuple[float, float] | None = None, specular: float = 0.1) -> str:
        """A material, textured when ``img`` is given (stretched over each face, or ``repeat`` per metre)."""
        name = self._name("m")
        attrs = f'rgba="{" ".join(f"{v:.3g}" for v in rgba)}" emission="{emission:.3g}" specular="{specular:.3g}" shininess="0.2"'
        if img is not None:
            ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            self.assets[f"{name}.png"] = png.tobytes()
            self.asset_xml.append(f'<texture name="t{name}" type="2d" file="{name}.png"/>')
            rep = f'texrepeat="{repeat[0]:.4g} {repeat[1]:.4g}" texuniform="true"' if repeat else 'texrepeat="1 1"'
            attrs += f' texture="t{name}" {rep}'
        self.asset_xml.append(f'<material name="{name}" {attrs}/>')
        return name

    def box(self, pos, half, mat: str, euler_deg: float = 0.0) -> None:
        e = f' euler="0 0 {euler_deg:.4g}"' if euler_deg else ""
        self.body.append(f'<geom type="box" pos="{pos[0]:.4g} {pos[1]:.4g} {pos[2]:.4g}" '
                         f'size="{half[0]:.4g} {half[1]:.4g} {half[2]:.4g}" material="{mat}"{e}/>')

    def cylinder(self, p0, p1, r: float, mat: str) -> None:
        self.body.append(f'<geom type="cylinder" fromto="{" ".join(f"{v:.4g}" for v in (*p0, *p1))}" '
                         f'size="{r:.4g}" material="{mat}"/>')

    def lamp(self, pos, half, color=(1.0, 0.92, 0.8), power: float = 0.9, reach: float = 0.08) -> None:
        """An emissive fixture and a point light just below it."""
        mat = self.material(rgba=(*color, 1), emission=1.0)
        self.box(pos, half, mat)
        name = self._name("L")
        lp = np.array([pos[0], pos[1], pos[2] - half[2] - 0.15])
        self.body.append(f'<light name="{name}" pos="{lp[0]:.4g} {lp[1]:.4g} {lp[2]:.4g}" dir="0 0 -1" type="point" '
                         f'diffuse="{color[0] * power:.3g} {color[1] * power:.3g} {color[2] * power:.3g}" '
                         f'specular="0.1 0.1 0.1" attenuation="1 {reach:.3g} {reach * reach:.3g}" castshadow="false"/>')
        self.lamps.append((mat, name, lp))

    def xml(self, name: str, fovy: float) -> str:
        return f"""<mujoco model="{name}">
  <!-- clip planes scale with the statistic extent: 0.1 m to 120 m -->
  <visual>
    <headlight ambient="0.05 0.05 0.05" diffuse="0 0 0" specular="0 0 0"/>
    <quality shadowsize="0" offsamples="0"/>
    <map znear="0.01" zfar="12"/>
  </visual>
  <statistic extent="10" center="0 0 1"/>
  <asset>
    {chr(10).join("    " + a for a in self.asset_xml).strip()}
  </asset>
  <worldbody>
    {chr(10).join("    " + b for b in self.body).strip()}
    <body name="rig" mocap="true" pos="0 0 1">
      <camera name="camera" mode="fixed" xyaxes="0 -1 0 0 0 1" fovy="{fovy:.4g}"/>
      <light name="headlight" mode="fixed" pos="0 0 -0.2" dir="1 0 -0.08" type="spot" cutoff="32" exponent="6"
             diffuse="1.2 1.15 1.05" specular="0.2 0.2 0.2" attenuation="1 0.02 0.012" castshadow="false"/>
    </body>
  </worldbody>
</mujoco>
"""


def tunnel(seed: int = 0, length: float = 200.0, fovy: float = 70.0) -> World:
    """A straight road tunnel along +x from 0 to ``length`` m, 7 m wide, 5 m high."""
    m = _Mjcf(seed)
    rng = m.rng
    W, H, seg = 7.0, 5.0, 4.0
    L = seg * int(np.ceil(length / seg))
    hw = W / 2
    road = m.material(tx.asphalt(rng), repeat=(0.25, 0.25))
    m.box((L / 2, 0, -0.05), (L / 2 + 10, hw, 0.05), road)
    walk = m.material(tx.plain(rng, (150, 148, 140), grain=14), repeat=(0.5, 0.5))
    for s in (-1, 1):
        m.box((L / 2, s * (hw - 0.4), 0.075), (L / 2 + 10, 0.4, 0.075), walk)
    white = m.material(rgba=(0.92, 0.92, 0.88, 1), specular=0.3)
    for s in (-1, 1):
        m.box((L / 2, s * (hw - 1.0), 0.002), (L / 2 + 10, 0.06, 0.002), white)
    for x in np.arange(2.0, L, 9.0):  # dashed centre line
        m.box((x, 0, 0.002), (1.5, 0.06, 0.002), white)
    ceiling = m.material(tx.plain(rng, (70, 70, 72), grain=16), repeat=(0.25, 0.25))
    m.box((L / 2, 0, H + 0.1), (L / 2 + 10, hw + 2, 0.1), ceiling)
    # walls: segments from a pool of looks, each with its own grime; numbered niches every 48 m
    niche_every = 12
    for side in (-1, 1):
        for i in range(int(L / seg)):
            x0 = i * seg
            is_niche = (i % niche_every) == (6 if side > 0 else 0) and 0 < i < L / seg - 1
            if not is_niche:
                mat = m.material(tx.concrete_wall(rng, int(rng.integers(0, 5))))
                m.box((x0 + seg / 2, side * (hw + 0.1), H / 2), (seg / 2, 0.1, H / 2), mat)
                continue
            k = int(i // niche_every) + 1 + (100 if side > 0 else 0)
            back = m.material(tx.plain(rng, (170, 160, 150), grain=12))
            m.box((x0 + seg / 2, side * (hw + 1.6), H / 2), (seg / 2, 0.1, H / 2), back)
            for xe in (x0, x0 + seg):
                m.box((xe, side * (hw + 0.8), H / 2), (0.1, 0.8, H / 2), back)
            m.box((x0 + seg / 2, side * (hw + 0.8), 3.0 + (H - 3.0) / 2), (seg / 2, 0.8, (H - 3.0) / 2), back)
            sos = m.material(tx.sign(f"SOS {k}", fg=(255, 255, 255), bg=(230, 90, 20)))
            m.box((x0 + seg / 2, side * (hw + 1.35), 1.2), (0.5, 0.15, 0.6), sos)
            exit_ = m.material(tx.sign(f"EXIT {k}", fg=(255, 255, 255), bg=(20, 150, 60)), emission=0.6)
            m.box((x0 + seg / 2, side * (hw - 0.05), 3.3), (0.7, 0.04, 0.22), exit_)
    # pipes with brackets and valves on the left wall, a cable tray on the right
    grey, yellow = m.material(rgba=(0.55, 0.56, 0.58, 1), specular=0.4), m.material(rgba=(0.85, 0.7, 0.1, 1), specular=0.4)
    m.cylinder((0, hw - 0.3, 4.0), (L, hw - 0.3, 4.0), 0.15, grey)
    m.cylinder((0, hw - 0.25, 4.45), (L, hw - 0.25, 4.45), 0.08, yellow)
    bracket = m.material(rgba=(0.25, 0.25, 0.27, 1))
    for x in np.arange(1.5, L, 3.0):
        m.box((x, hw - 0.15, 4.2), (0.04, 0.15, 0.35), bracket)
    red = m.material(rgba=(0.8, 0.1, 0.08, 1), specular=0.3)
    for x in np.arange(5.0, L, 10.0):
        if rng.random() < 0.35:
            m.cylinder((x, hw - 0.5, 4.0), (x, hw - 0.62, 4.0), 0.25, red)
    tray = m.material(rgba=(0.45, 0.45, 0.42, 1))
    m.box((L / 2, -(hw - 0.2), 3.6), (L / 2 + 10, 0.2, 0.04), tray)
    for x in np.arange(12.0, L, 24.0):  # junction boxes under the tray, different colours
        col = m.material(tx.plain(rng, tuple(int(v) for v in rng.integers(60, 230, 3))))
        m.box((x + rng.uniform(-3, 3), -(hw - 0.05), float(rng.uniform(1.6, 2.8))), (0.3, 0.05, 0.25), col)
    fan = m.material(rgba=(0.35, 0.36, 0.38, 1), specular=0.5)
    for x in np.arange(30.0, L - 10, 50.0):
        for s in (-1, 1):
            m.cylinder((x - 1.3, s * 1.3, H - 0.65), (x + 1.3, s * 1.3, H - 0.65), 0.45, fan)
    for x in np.arange(25.0, L, 25.0):  # distance markers, right wall
        mat = m.material(tx.sign(f"{x / 1000:.3f} km", bg=(245, 245, 240), border=(20, 20, 20)))
        m.box((x, -(hw - 0.03), 2.3), (0.5, 0.03, 0.22), mat)
    # self-lit escape-route signs every 25 m, alternating walls: distances to the nearest exits in each direction
    # (lit day and night, as tunnel safety rules require); niches are the exits
    exits = np.array([i * seg + seg / 2 for i in range(int(L / seg)) if (i % niche_every) in (0, 6)
                      and 0 < i < L / seg - 1] or [L])
    for j, x in enumerate(np.arange(12.5, L, 25.0)):
        back, ahead = exits[exits < x], exits[exits > x]
        text = f"<{x - back.max():.0f}m  {ahead.min() - x:.0f}m>" if len(back) and len(ahead) else \
            f"EXIT {abs(exits - x).min():.0f}m"
        side = 1 if j % 2 else -1
        mat = m.material(tx.sign(text, fg=(255, 255, 255), bg=(0, 140, 70), w=384, h=96), emission=0.7)
        m.box((x, side * (hw - 0.04), 1.6), (0.75, 0.03, 0.19), mat)
    # sparse lamps, alternating sides
    for j, x in enumerate(np.arange(6.0, L, 12.0)):
        m.lamp((x, (1.0 if j % 2 else -1.0) * 2.2, H - 0.05), (0.6, 0.12, 0.05), color=(1.0, 0.85, 0.6), power=1.5, reach=0.05)
    # daylight beyond both portals (bright by day, dark at night)
    sky = m.material(rgba=(0.85, 0.9, 1.0, 1), emission=1.0)
    for x in (-10.5, L + 10.5):
        m.box((x, 0, H / 2), (0.1, hw + 3, H), sky)
    centre = np.array([[0.0, 0.0], [L, 0.0]])
    return World("tunnel", seed, m.xml("tunnel", fovy), m.assets, centre, False, m.lamps, camera_height=1.3,
                 lane_offset=-1.7, fovy=fovy, daylight=[sky])


def building(seed: int = 0, fovy: float = 70.0, wings: bool = False) -> World:
    """One office floor: a rectangular corridor loop (2.4 m wide, 3 m high) with doorways into rooms on both
    sides. ``wings``: the loop's second half (its last two sides) is built from the same random draws as its first
    half: two look-alike wings, the floor symmetric under a half turn."""
    m = _Mjcf(seed)
    rng = m.rng
    X, Y, C, H = 40.0, 24.0, 2.4, 3.0   # outer size, corridor width, height
    floor = m.material(tx.floor_tiles(rng), repeat=(0.5, 0.5))
    m.box((X / 2, Y / 2, -0.05), (X / 2 + 8, Y / 2 + 8, 0.05), floor)
    ceil = m.material(tx.plain(rng, (225, 225, 220), grain=5), repeat=(0.5, 0.5))
    m.box((X / 2, Y / 2, H + 0.05), (X / 2 + 8, Y / 2 + 8, 0.05), ceil)
    room_n = [100]
    panel, second_wing = [0], [False]
    detail = np.random.default_rng([seed, 7])  # the second wing's own panels

    def wall(p0, p1, outward):
        """A straight corridor wall from p0 to p1 with doorways; ``outward`` is the unit normal away from the
        corridor, rooms are built on that side."""
        p0, p1, nrm = np.asarray(p0, float), np.asarray(p1, float), np.asarray(outward, float)
        d = p1 - p0
        length = float(np.linalg.norm(d))
        u = d / length
        yaw = float(np.degrees(np.arctan2(u[1], u[0])))
        s = 0.0
        while s < length - 0.5:
            run = float(min(length - s, rng.uniform(2.5, 6.0)))
            door_here = s + run + 1.0 < length - 0.5 and rng.random() < 0.6
            look = tx.painted_wall(rng, int(rng.integers(0, 6)))
            panel[0] += 1
            if second_wing[0] and panel[0] % 3 == 0:  # one panel in three differs between the wings (its posters)
                look = tx.painted_wall(detail, int(detail.integers(0, 6)))
            mat = m.material(look)
            c = p0 + u * (s + run / 2) + nrm * 0.1
            m.box((c[0], c[1], H / 2), (run / 2, 0.1, H / 2), mat, yaw)
            if rng.random() < 0.25:  # fire extinguisher on the wall
                e = p0 + u * (s + rng.uniform(0.3, run - 0.3)) - nrm * 0.12
                m.cylinder((e[0], e[1], 0.4), (e[0], e[1], 0.95), 0.09, red)
            s += run
            if not door_here:
                continue
            room_n[0] += 1
            dc = p0 + u * (s + 0.5)
            m.box((*(dc + nrm * 0.1), 2.6), (0.5, 0.1, 0.2), lintel, yaw)           # over the doorway
            leaf = m.material(tx.door(rng, int(rng.integers(0, 5))))
            hinge = p0 + u * s + nrm * 0.2
            lc = hinge + nrm * 0.45 + u * 0.03
            m.box((lc[0], lc[1], 1.05), (0.45, 0.025, 1.05), leaf, yaw + 90)       # door open into the room
            plate = m.material(tx.sign(f"{room_n[0] // 100}.{room_n[0] % 100:02d}", bg=(40, 60, 110),
                                       fg=(255, 255, 255), w=128, h=64))
            pc = p0 + u * (s + 1.25) - nrm * 0.01
            m.box((pc[0], pc[1], 1.6), (0.14, 0.01, 0.07), plate, yaw)
            room(p0 + u * (s + 0.5), u, nrm, yaw)
            s += 1.0

    def room(door_c, u, nrm, yaw):
        """A 4 m x 4 m furnished room behind a doorway."""
        c = door_c + nrm * 2.2
        paint = m.material(tx.painted_wall(rng, int(rng.integers(0, 6))))
        m.box((*(c + nrm * 2.0), H / 2), (2.0, 0.05, H / 2), paint, yaw)
        for sgn in (-1, 1):
            sc = c + u * sgn * 2.0
            m.box((sc[0], sc[1], H / 2), (2.0, 0.05, H / 2), paint, yaw + 90)
        tc = c + u * rng.uniform(-1, 1) + nrm * rng.uniform(-0.5, 0.8)
        m.box((tc[0], tc[1], 0.73), (0.7, 0.4, 0.03), wood, yaw + float(rng.uniform(-20, 20)))   # table
        for _ in range(int(rng.integers(1, 3))):
            sh = c + nrm * 1.7 + u * rng.uniform(-1.4, 1.4)
            m.box((sh[0], sh[1], 0.9), (0.5, 0.2, 0.9), m.material(tx.shelf(rng)), yaw)          # shelf
        if rng.random() < 0.6:
            pc = c + u * rng.uniform(-1.5, 1.5) + nrm * rng.uniform(-1, 1)
            m.cylinder((pc[0], pc[1], 0.0), (pc[0], pc[1], 0.35), 0.2, pot)
            m.box((pc[0], pc[1], 0.75), (0.3, 0.3, 0.4), leaves)                                   # plant
        m.lamp((*c, H - 0.03), (0.5, 0.5, 0.02), color=(1.0, 1.0, 0.95), power=0.5, reach=0.2)

    red = m.material(rgba=(0.8, 0.08, 0.06, 1), specular=0.4)
    lintel = m.material(rgba=(0.85, 0.85, 0.82, 1))
    wood = m.material(rgba=(0.55, 0.38, 0.22, 1))
    pot = m.material(rgba=(0.6, 0.3, 0.2, 1))
    leaves = m.material(rgba=(0.15, 0.5, 0.15, 1))
    # outer walls face inwards (rooms outside), inner walls face outwards (rooms in the core)
    corners_out = [(0, 0), (X, 0), (X, Y), (0, Y)]
    corners_in = [(C, C), (X - C, C), (X - C, Y - C), (C, Y - C)]
    for k in range(4):
        if wings:  # sides 2 and 3 draw what sides 0 and 1 drew
            rng.bit_generator.state = np.random.default_rng([seed, k % 2]).bit_generator.state
            second_wing[0] = k >= 2
        a, b = np.array(corners_out[k], float), np.array(corners_out[(k + 1) % 4], float)
        u = (b - a) / np.linalg.norm(b - a)
        wall(a, b, np.array([u[1], -u[0]]))          # right of the direction = outside for a CCW loop
        a2, b2 = np.array(corners_in[k], float), np.array(corners_in[(k + 1) % 4], float)
        wall(a2, b2, -np.array([u[1], -u[0]]))
    # ceiling panel lights along the corridor centreline
    c = C / 2
    loop = np.array([(c, c), (X - c, c), (X - c, Y - c), (c, Y - c), (c, c)])
    for k in range(4):
        a, b = loop[k], loop[k + 1]
        n = int(np.linalg.norm(b - a) // 4.0)
        for t in np.linspace(0, 1, n, endpoint=False)[1:]:
            p = a + t * (b - a)
            m.lamp((p[0], p[1], H - 0.03), (0.3, 0.3, 0.02), color=(1.0, 1.0, 0.97), power=0.6, reach=0.25)
    name = "wings" if wings else "building"
    return World(name, seed, m.xml(name, fovy), m.assets, loop, True, m.lamps, camera_height=1.2,
                 lane_offset=0.0, fovy=fovy)


def make_world(name: str, seed: int = 0, **kw) -> World:
    """``tunnel`` (keyword ``length``), ``building`` or ``wings``."""
    if name == "tunnel":
        return tunnel(seed, **kw)
    if name in ("building", "wings"):
        return building(seed, wings=name == "wings", **kw)
    from ..core.errors import VislocError
    raise VislocError(f"unknown world {name!r} (choose from {', '.join(WORLDS)})")
