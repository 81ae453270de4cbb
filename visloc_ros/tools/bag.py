"""rosbag2 (MCAP or sqlite3) through the ``rosbags`` library: write a bag from a CSV sequence, read image and
pose streams, and turn a bag into a dataset for map building.

Topics written by :func:`csv_to_bag` (what a real robot records): ``/camera/image_raw`` (sensor_msgs/Image),
``/camera/camera_info`` (with a calibration file), ``/imu/data`` (sensor_msgs/Imu, from an IMU CSV),
``/odom`` (nav_msgs/Odometry: wheel odometry simulated from the ground truth with scale and heading drift),
``/ground_truth/pose`` (geometry_msgs/PoseStamped, frame ``map``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from ..core.dataset import read_csv
from ..core.errors import DatasetError, VislocError
from ..core.pose import yaw_from_quat

IMAGE_TOPIC, INFO_TOPIC, IMU_TOPIC = "/camera/image_raw", "/camera/camera_info", "/imu/data"
ODOM_TOPIC, GT_TOPIC = "/odom", "/ground_truth/pose"


class BagError(VislocError):
    """A bag cannot be read or written, or lacks a needed topic."""


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _stamp(ts, ns: int):
    return ts.types["builtin_interfaces/msg/Time"](sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _header(ts, ns: int, frame: str):
    return ts.types["std_msgs/msg/Header"](stamp=_stamp(ts, ns), frame_id=frame)


def read_calibration(path: str | Path) -> dict:
    """EuRoC/Kalibr-style camera YAML (resolution, intrinsics fu fv cu cv, distortion_coefficients)."""
    text = Path(path).read_text()
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("%YAML"))
    try:
        d = yaml.safe_load(text)
        w, h = d["resolution"]
        fu, fv, cu, cv = d["intrinsics"]
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: not a camera calibration with resolution and intrinsics ({e})") from None
    return {"width": int(w), "height": int(h), "K": [fu, 0.0, cu, 0.0, fv, cv, 0.0, 0.0, 1.0],
            "D": [float(v) for v in d.get("distortion_coefficients", [])],
            "model": "plumb_bob" if d.get("distortion_model", "radial-tangential") == "radial-tangential" else "equidistant"}


def read_imu_csv(path: str | Path) -> np.ndarray:
    """EuRoC IMU CSV -> (N, 7): stamp_ns, gyro xyz (rad/s), accel xyz (m/s^2)."""
    try:
        rows = [r for r in csv.reader(Path(path).open()) if r and not r[0].startswith("#")]
        return np.array([[float(v) for v in r[:7]] for r in rows])
    except (OSError, ValueError, IndexError) as e:
        raise DatasetError(f"{path}: not an IMU CSV (stamp_ns, gyro x y z, accel x y z): {e}") from None


def _rgb_from_file(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


class BagWriter:
    """Writes the messages a camera robot records into a rosbag2 (MCAP or sqlite3); counts what it wrote.

    ``with BagWriter(path) as w: w.image(t_ns, rgb); w.imu(...); ...`` (each topic is registered on first use).
    """

    def __init__(self, path: str | Path, storage: str = "mcap", camera_frame: str = "camera"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} already exists")
        self.ts = typestore()
        self.T = self.ts.types
        self.camera_frame = camera_frame
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._w = Writer(self.path, version=9, storage_plugin=plugin)
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        self._w.open()
        return self

    def __exit__(self, *exc) -> None:
        self._w.close()

    def _write(self, topic: str, msgtype: str, t_ns: int, msg) -> None:
        if topic not in self._conns:
            self._conns[topic] = self._w.add_connection(topic, msgtype, typestore=self.ts)
        self._w.write(self._conns[topic], int(t_ns), self.ts.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def _vec(self, v):
        return self.T["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))

    def _pose(self, xyz, quat):
        T = self.T
        return T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
            orientation=T["geometry_msgs/msg/Quaternion"](x=float(quat[0]), y=float(quat[1]), z=float(quat[2]),
                                                          w=float(quat[3])))

    def image(self, t_ns: int, img: np.ndarray, topic: str = IMAGE_TOPIC) -> None:
        """An RGB (HxWx3 uint8, rgb8) or grey (mono8/mono16) sensor_msgs/Image."""
        data = np.ascontiguousarray(img)
        enc = ("mono16" if data.dtype == np.uint16 else "mono8") if data.ndim == 2 else "rgb8"
        h, w = data.shape[:2]
        self._write(topic, "sensor_msgs/msg/Image", t_ns, self.T["sensor_msgs/msg/Image"](
            header=_header(self.ts, t_ns, self.camera_frame), height=h, width=w, encoding=enc, is_bigendian=0,
            step=int(data.strides[0]), data=data.reshape(-1).view(np.uint8)))

    def camera_info(self, t_ns: int, calib: dict, topic: str = INFO_TOPIC) -> None:
        """sensor_msgs/CameraInfo from ``{width, height, K (9), D, model}``."""
        T, K = self.T, [float(v) for v in calib["K"]]
        self._write(topic, "sensor_msgs/msg/CameraInfo", t_ns, T["sensor_msgs/msg/CameraInfo"](
            header=_header(self.ts, t_ns, self.camera_frame), height=int(calib["height"]), width=int(calib["width"]),
            distortion_model=calib["model"], d=np.array(calib["D"], float), k=np.array(K), r=np.eye(3).reshape(-1),
            p=np.array([K[0], 0, K[2], 0, 0, K[4], K[5], 0, 0, 0, 1, 0], float), binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)))

    def imu(self, t_ns: int, gyro, accel, gyro_var: float, accel_var: float, frame: str = "imu",
            topic: str = IMU_TOPIC) -> None:
        """sensor_msgs/Imu without orientation (covariance[0] = -1), rates and specific force with variances."""
        T = self.T
        self._write(topic, "sensor_msgs/msg/Imu", t_ns, T["sensor_msgs/msg/Imu"](
            header=_header(self.ts, t_ns, frame), orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            orientation_covariance=np.array([-1.0] + [0.0] * 8), angular_velocity=self._vec(gyro),
            angular_velocity_covariance=np.diag([gyro_var] * 3).reshape(-1), linear_acceleration=self._vec(accel),
            linear_acceleration_covariance=np.diag([accel_var] * 3).reshape(-1)))

    def odometry(self, t_ns: int, x: float, y: float, yaw: float, v: float = 0.0, w: float = 0.0,
                 pose_var: float = 0.01, twist_var: tuple[float, float] = (0.01, 0.01), topic: str = ODOM_TOPIC) -> None:
        """nav_msgs/Odometry (odom -> base_link), planar: x, y, yaw and forward speed / yaw rate."""
        T = self.T
        pc = np.zeros(36)
        pc[[0, 7, 35]] = pose_var
        pc[[14, 21, 28]] = 1e6  # z, roll, pitch not observed
        tc = np.zeros(36)
        tc[[0, 35]] = twist_var
        tc[[7, 14, 21, 28]] = 1e6
        q = [0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))]
        self._write(topic, "nav_msgs/msg/Odometry", t_ns, T["nav_msgs/msg/Odometry"](
            header=_header(self.ts, t_ns, "odom"), child_frame_id="base_link",
            pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=self._pose((x, y, 0.0), q), covariance=pc),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](
                twist=T["geometry_msgs/msg/Twist"](linear=self._vec((v, 0, 0)), angular=self._vec((0, 0, w))),
                covariance=tc)))

    def pose(self, t_ns: int, xyz, quat, frame: str = "map", topic: str = GT_TOPIC) -> None:
        """geometry_msgs/PoseStamped (ground truth); ``quat`` is x, y, z, w."""
        self._write(topic, "geometry_msgs/msg/PoseStamped", t_ns, self.T["geometry_msgs/msg/PoseStamped"](
            header=_header(self.ts, t_ns, frame), pose=self._pose(xyz, quat)))


def csv_to_bag(csv_path: str | Path, out: str | Path, imu_csv: str | Path | None = None,
               calibration: str | Path | None = None, storage: str = "mcap", rate_hz: float = 20.0,
               camera_frame: str = "camera", seed: int = 0, progress=None) -> dict:
    """A CSV image sequence with poses -> rosbag2. Returns topic message counts.

    Wheel odometry is simulated from the ground-truth poses (:func:`visloc_ros.tools.odometry.simulate_odometry`:
    speed scale error, yaw-rate bias, white noise), as labelled in docs/ros.md."""
    from .odometry import OdomSpec, simulate_odometry

    ds = read_csv(csv_path)
    n = len(ds)
    stamps = ds.stamp_ns if ds.stamp_ns is not None else (np.arange(n) * (1e9 / rate_hz)).astype(np.int64) + 1_000_000_000
    quat = ds.quat if ds.quat is not None else np.tile([0, 0, 0, 1.0], (n, 1))
    yaw = np.unwrap(yaw_from_quat(quat))
    spec = OdomSpec()
    odom = simulate_odometry(stamps / 1e9, ds.xyz[:, :2], yaw, spec, seed) if n > 1 else None
    calib = read_calibration(calibration) if calibration else None
    imu = read_imu_csv(imu_csv) if imu_csv else None
    if imu is not None:  # the IMU stream over the image sequence (plus a second either side)
        imu = imu[(imu[:, 0] >= stamps.min() - 1e9) & (imu[:, 0] <= stamps.max() + 1e9)]
    events = [(int(t), 1, i) for i, t in enumerate(stamps)]
    if imu is not None:
        events += [(int(r[0]), 0, j) for j, r in enumerate(imu)]
    events.sort()
    bar = progress(total=len(events), desc="writing bag") if progress else None
    with BagWriter(out, storage, camera_frame) as w:
        for t, kind, i in events:
            if kind == 0:
                r = imu[i]
                w.imu(t, r[1:4], r[4:7], 200.0 * 1.7e-4 ** 2, 200.0 * 2.0e-3 ** 2)  # EuRoC densities at 200 Hz
            else:
                w.image(t, _rgb_from_file(ds.path(i)))
                if calib is not None:
                    w.camera_info(t, calib)
                w.pose(t, ds.xyz[i], quat[i])
                if odom is not None:
                    w.odometry(t, odom.xy[i, 0], odom.xy[i, 1], odom.yaw[i], odom.v[i], odom.w[i],
                               twist_var=(spec.speed_noise ** 2, spec.yaw_rate_noise ** 2))
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return w.counts


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    t_ns: int
    raw: bytes


def open_reader(path: str | Path):
    from rosbags.rosbag2 import Reader

    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {p} does not exist")
    try:
        r = Reader(p)
        r.open()
    except Exception as e:  # rosbags raises its own ReaderError types
        raise BagError(f"cannot open bag {p}: {e}") from None
    return r


def topics(path: str | Path) -> dict[str, tuple[str, int]]:
    r = open_reader(path)
    try:
        return {c.topic: (c.msgtype, c.msgcount) for c in r.connections}
    finally:
        r.close()


def iter_messages(path: str | Path, wanted: list[str] | None = None):
    """(topic, msgtype, t_ns, raw CDR bytes) in time order."""
    r = open_reader(path)
    try:
        conns = [c for c in r.connections if wanted is None or c.topic in wanted]
        if wanted:
            missing = set(wanted) - {c.topic for c in conns}
            if missing:
                raise BagError(f"bag {path} has no topic(s) {', '.join(sorted(missing))} "
                               f"(it has {', '.join(sorted(c.topic for c in r.connections))})")
        for c, t, raw in r.messages(connections=conns):
            yield BagMessage(c.topic, c.msgtype, t, bytes(raw))
    finally:
        r.close()


def pose_track(path: str | Path, topic: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Header stamps (ns), positions (N, 3) and quaternions (N, 4, x y z w) of a PoseStamped /
    PoseWithCovarianceStamped / Odometry topic."""
    ts = typestore()
    t, p, q = [], [], []
    for m in iter_messages(path, [topic]):
        msg = ts.deserialize_cdr(m.raw, m.msgtype)
        pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
        t.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        p.append([pose.position.x, pose.position.y, pose.position.z])
        q.append([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w])
    if not t:
        raise BagError(f"topic {topic} in {path} has no messages")
    return np.array(t, np.int64), np.array(p), np.array(q)


def nearest(track_t: np.ndarray, t: int, max_gap_ns: int) -> int | None:
    i = int(np.clip(np.searchsorted(track_t, t), 1, len(track_t) - 1)) if len(track_t) > 1 else 0
    j = i if len(track_t) == 1 or abs(track_t[i] - t) < abs(track_t[i - 1] - t) else i - 1
    return j if abs(int(track_t[j]) - t) <= max_gap_ns else None


def image_stream(path: str | Path, topic: str):
    """(header stamp ns, RGB image) of every decodable image on ``topic``; bad frames yield an ImageError."""
    from ..core.errors import ImageError
    from ..core.preprocess import decode_compressed, decode_raw

    ts = typestore()
    for m in iter_messages(path, [topic]):
        msg = ts.deserialize_cdr(m.raw, m.msgtype)
        t = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        try:
            if m.msgtype.endswith("CompressedImage"):
                yield t, decode_compressed(msg.data)
            else:
                yield t, decode_raw(msg.data, msg.width, msg.height, msg.encoding, msg.step, bool(msg.is_bigendian))
        except ImageError as e:
            yield t, e


def turn_deg(q1: np.ndarray, q2: np.ndarray) -> float:
    """The angle (degrees) of the rotation between two unit quaternions (x, y, z, w)."""
    return float(np.degrees(2.0 * np.arccos(min(1.0, abs(float(np.dot(q1, q2)))))))


def bag_to_dataset(bag: str | Path, image_topic: str, pose_topic: str, out_dir: str | Path,
                   max_gap_s: float = 0.05, every: int = 1, min_travel_m: float = 0.0,
                   min_turn_deg: float = 0.0) -> Path:
    """Extract images with the pose nearest in time (within ``max_gap_s``) to PNGs + a CSV dataset.

    ``every``: keep every N-th of them. ``min_travel_m`` / ``min_turn_deg`` (keyframes, 0 = off): keep an image
    only once the robot has moved that far, or turned that much, since the last image kept: a mapping run that
    stood still (waiting at a door) would otherwise fill the map with copies of one spot."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    tt, pp, qq = pose_track(bag, pose_topic)
    rows, k, last = [], 0, None
    keyframes = min_travel_m > 0 or min_turn_deg > 0
    for t, rgb in image_stream(bag, image_topic):
        if isinstance(rgb, Exception):
            continue
        j = nearest(tt, t, int(max_gap_s * 1e9))
        if j is None:
            continue
        k += 1
        if (k - 1) % every:
            continue
        if keyframes and last is not None:
            moved = min_travel_m > 0 and float(np.linalg.norm(pp[j] - pp[last])) >= min_travel_m
            turned = min_turn_deg > 0 and turn_deg(qq[j], qq[last]) >= min_turn_deg
            if not (moved or turned):
                continue
        last = j
        name = f"images/{t}.png"
        cv2.imwrite(str(out / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        rows.append({"image": name, "stamp_ns": t, "x": pp[j, 0], "y": pp[j, 1], "z": pp[j, 2],
                     "qx": qq[j, 0], "qy": qq[j, 1], "qz": qq[j, 2], "qw": qq[j, 3]})
    if not rows:
        raise BagError(f"no image on {image_topic} has a pose on {pose_topic} within {max_gap_s} s")
    with open(out / "map.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out / "map.csv"
