"""Message <-> numpy adapters: the only place that knows both ROS messages and the core's types.

Frames: the core's fix is the pose of the *camera* in the map frame (x, y, z, yaw about z; the map's
place orientations are camera body orientations, x forward, z up, REP-103). The published pose is that of
``base_link``: ``T_map_base = T_map_cam * inv(T_base_cam)``, where ``T_base_cam`` is the camera extrinsic.
Quaternions are x, y, z, w (ROS order); transforms3d's w-first order is converted here only.
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
import transforms3d

from ..core.localizer import Fix
from ..core.pose import UNOBSERVED_VAR
from ..core.preprocess import decode_compressed, decode_raw


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB (raises ImageError)."""
    return decode_raw(msg.data, msg.width, msg.height, msg.encoding, msg.step, bool(msg.is_bigendian))


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage -> HxWx3 uint8 RGB (raises ImageError)."""
    return decode_compressed(msg.data)


def rgb_to_image(rgb: np.ndarray, header):
    from sensor_msgs.msg import Image

    m = Image()
    m.header = header
    m.height, m.width = int(rgb.shape[0]), int(rgb.shape[1])
    m.encoding, m.is_bigendian, m.step = "rgb8", 0, int(rgb.shape[1] * 3)
    m.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return m


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def extrinsic_matrix(x: float, y: float, z: float, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """4x4 T_base_cam from the camera's position and roll/pitch/yaw (radians, static axes xyz) in base_link."""
    t = np.eye(4)
    t[:3, :3] = transforms3d.euler.euler2mat(roll, pitch, yaw, "sxyz")
    t[:3, 3] = (x, y, z)
    return t


def base_pose(fix: Fix, t_base_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, quaternion x y z w, 6x6 covariance) of base_link in the map frame."""
    cov = fix.cov6.copy()
    inv = np.linalg.inv(t_base_cam)
    if math.isfinite(fix.yaw):
        t_map_cam = np.eye(4)
        t_map_cam[:3, :3] = transforms3d.euler.euler2mat(0.0, 0.0, fix.yaw, "sxyz")
        t_map_cam[:3, 3] = fix.xyz
        t_map_base = t_map_cam @ inv
        w, x, y, z = transforms3d.quaternions.mat2quat(t_map_base[:3, :3])
        return t_map_base[:3, 3], np.array([x, y, z, w]), cov
    # heading unknown: the extrinsic's horizontal offset could point anywhere; widen x/y by it
    pos = fix.xyz + np.array([0.0, 0.0, inv[2, 3]])
    r2 = float(inv[0, 3] ** 2 + inv[1, 3] ** 2)
    cov[0, 0] += r2
    cov[1, 1] += r2
    cov[5, 5] = UNOBSERVED_VAR
    return pos, np.array([0.0, 0.0, 0.0, 1.0]), cov


def pose_msg(fix: Fix, header, t_base_cam: np.ndarray):
    from geometry_msgs.msg import PoseWithCovarianceStamped

    pos, q, cov = base_pose(fix, t_base_cam)
    m = PoseWithCovarianceStamped()
    m.header = header
    p = m.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in pos)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    m.pose.covariance = [float(v) for v in cov.reshape(-1)]
    return m


def navsat_msg(fix: Fix, header, t_base_cam: np.ndarray, datum) -> object:
    """NavSatFix of base_link (georeferenced maps); position covariance in ENU, m^2."""
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    from ..core.geo import enu_to_geodetic

    pos, _, cov = base_pose(fix, t_base_cam)
    lat, lon, alt = enu_to_geodetic(pos, datum)
    m = NavSatFix()
    m.header = header
    m.status.status = NavSatStatus.STATUS_FIX
    m.status.service = 0  # not a satellite system
    m.latitude, m.longitude, m.altitude = float(lat), float(lon), float(alt)
    m.position_covariance = [float(v) for v in cov[:3, :3].reshape(-1)]
    m.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return m


def cell_colour(cell: int) -> tuple[float, float, float]:
    """A distinct colour per SOM cell (golden-ratio hue walk)."""
    h = (cell * 0.618033988749895) % 1.0
    return colorsys.hsv_to_rgb(h, 0.85, 0.95)


def places_markers(xyz: np.ndarray, cells: np.ndarray, header, scale: float):
    """MarkerArray: every map place as a point coloured by its SOM cell, plus the cell centroids' labels."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    pts = Marker()
    pts.header = header
    pts.ns, pts.id, pts.type, pts.action = "visloc_places", 0, Marker.POINTS, Marker.ADD
    pts.scale.x = pts.scale.y = float(scale)
    pts.pose.orientation.w = 1.0
    pts.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in xyz]
    pts.colors = [ColorRGBA(r=r, g=g, b=b, a=1.0) for r, g, b in (cell_colour(int(c)) for c in cells)]
    arr = MarkerArray()
    arr.markers.append(pts)
    for i, c in enumerate(np.unique(cells)):
        centre = xyz[cells == c].mean(0)
        t = Marker()
        t.header = header
        t.ns, t.id, t.type, t.action = "visloc_cells", int(i), Marker.TEXT_VIEW_FACING, Marker.ADD
        t.pose.position.x, t.pose.position.y, t.pose.position.z = float(centre[0]), float(centre[1]), float(centre[2]) + scale * 4
        t.pose.orientation.w = 1.0
        t.scale.z = float(scale * 3)
        r, g, b = cell_colour(int(c))
        t.color = ColorRGBA(r=r, g=g, b=b, a=0.9)
        t.text = f"cell {int(c)}"
        arr.markers.append(t)
    return arr
