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


def simulate_wheel_odometry(xyz: np.ndarray, yaw: np.ndarray, seed: int = 0, scale_error: float = 0.02,
                            yaw_drift_per_m: float = 0.01, noise: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the true planar motion with a scale error, a heading drift and noise: odom-frame x, y, yaw."""
    rng = np.random.default_rng(seed)
    n = len(xyz)
    ox, oy, oyaw = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(1, n):
        c, s = np.cos(yaw[i - 1]), np.sin(yaw[i - 1])
        d = xyz[i, :2] - xyz[i - 1, :2]
        fwd, lat = c * d[0] + s * d[1], -s * d[0] + c * d[1]  # motion in the robot frame
        step = np.hypot(fwd, lat)
        dyaw = np.arctan2(np.sin(yaw[i] - yaw[i - 1]), np.cos(yaw[i] - yaw[i - 1])) + yaw_drift_per_m * step
        fwd, lat = fwd * (1 + scale_error) + rng.normal(0, noise), lat * (1 + scale_error) + rng.normal(0, noise)
        cc, ss = np.cos(oyaw[i - 1]), np.sin(oyaw[i - 1])
        ox[i], oy[i] = ox[i - 1] + cc * fwd - ss * lat, oy[i - 1] + ss * fwd + cc * lat
        oyaw[i] = oyaw[i - 1] + dyaw + rng.normal(0, noise)
    return np.stack([ox, oy], 1), oyaw


def _image_msg(ts, path: Path, ns: int, frame: str):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    if img.ndim == 2:
        enc, data = ("mono16" if img.dtype == np.uint16 else "mono8"), img
    else:
        enc, data = "rgb8", cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    data = np.ascontiguousarray(data)
    h, w = data.shape[:2]
    return ts.types["sensor_msgs/msg/Image"](header=_header(ts, ns, frame), height=h, width=w, encoding=enc,
                                             is_bigendian=0, step=int(data.strides[0]),
                                             data=data.reshape(-1).view(np.uint8))


def csv_to_bag(csv_path: str | Path, out: str | Path, imu_csv: str | Path | None = None,
               calibration: str | Path | None = None, storage: str = "mcap", rate_hz: float = 20.0,
               camera_frame: str = "camera", seed: int = 0, progress=None) -> dict:
    """A CSV image sequence with poses -> rosbag2. Returns topic message counts."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ds = read_csv(csv_path)
    out = Path(out)
    if out.exists():
        raise BagError(f"{out} already exists")
    ts = typestore()
    T = ts.types
    n = len(ds)
    stamps = ds.stamp_ns if ds.stamp_ns is not None else (np.arange(n) * (1e9 / rate_hz)).astype(np.int64) + 1_000_000_000
    quat = ds.quat if ds.quat is not None else np.tile([0, 0, 0, 1.0], (n, 1))
    yaw = yaw_from_quat(quat)
    oxy, oyaw = simulate_wheel_odometry(ds.xyz, yaw, seed)
    calib = read_calibration(calibration) if calibration else None
    imu = read_imu_csv(imu_csv) if imu_csv else None
    if imu is not None:  # the IMU stream over the image sequence (plus a second either side)
        imu = imu[(imu[:, 0] >= stamps.min() - 1e9) & (imu[:, 0] <= stamps.max() + 1e9)]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    counts = {}
    with Writer(out, version=9, storage_plugin=plugin) as w:
        def conn(topic, typ):
            return w.add_connection(topic, typ, typestore=ts)
        c_img, c_gt, c_odom = conn(IMAGE_TOPIC, "sensor_msgs/msg/Image"), conn(GT_TOPIC, "geometry_msgs/msg/PoseStamped"), \
            conn(ODOM_TOPIC, "nav_msgs/msg/Odometry")
        c_info = conn(INFO_TOPIC, "sensor_msgs/msg/CameraInfo") if calib else None
        c_imu = conn(IMU_TOPIC, "sensor_msgs/msg/Imu") if imu is not None else None
        events = [(int(t), "frame", i) for i, t in enumerate(stamps)]
        if imu is not None:
            events += [(int(r[0]), "imu", j) for j, r in enumerate(imu)]
        events.sort()
        bar = progress(total=len(events), desc="writing bag") if progress else None
        for t, kind, i in events:
            if kind == "imu":
                r = imu[i]
                msg = T["sensor_msgs/msg/Imu"](
                    header=_header(ts, t, "imu"), orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                    orientation_covariance=np.array([-1.0] + [0.0] * 8),  # orientation not provided
                    angular_velocity=T["geometry_msgs/msg/Vector3"](x=r[1], y=r[2], z=r[3]),
                    angular_velocity_covariance=np.diag([1.7e-4 ** 2] * 3).reshape(-1) * 200.0,
                    linear_acceleration=T["geometry_msgs/msg/Vector3"](x=r[4], y=r[5], z=r[6]),
                    linear_acceleration_covariance=np.diag([2.0e-3 ** 2] * 3).reshape(-1) * 200.0)
                w.write(c_imu, t, ts.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
                counts[IMU_TOPIC] = counts.get(IMU_TOPIC, 0) + 1
            else:
                w.write(c_img, t, ts.serialize_cdr(_image_msg(ts, ds.path(i), t, camera_frame), "sensor_msgs/msg/Image"))
                if c_info is not None:
                    info = T["sensor_msgs/msg/CameraInfo"](
                        header=_header(ts, t, camera_frame), height=calib["height"], width=calib["width"],
                        distortion_model=calib["model"], d=np.array(calib["D"]), k=np.array(calib["K"]),
                        r=np.eye(3).reshape(-1), p=np.array([calib["K"][0], 0, calib["K"][2], 0, 0, calib["K"][4],
                                                             calib["K"][5], 0, 0, 0, 1, 0], float),
                        binning_x=0, binning_y=0,
                        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
                    w.write(c_info, t, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
                p = T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=ds.xyz[i, 0], y=ds.xyz[i, 1], z=ds.xyz[i, 2]),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=quat[i, 0], y=quat[i, 1], z=quat[i, 2], w=quat[i, 3]))
                w.write(c_gt, t, ts.serialize_cdr(T["geometry_msgs/msg/PoseStamped"](header=_header(ts, t, "map"), pose=p),
                                                  "geometry_msgs/msg/PoseStamped"))
                oq = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=float(np.sin(oyaw[i] / 2)), w=float(np.cos(oyaw[i] / 2)))
                cov = np.zeros(36)
                cov[[0, 7, 35]] = [0.01, 0.01, 0.01]
                cov[[14, 21, 28]] = 1e6
                odom = T["nav_msgs/msg/Odometry"](
                    header=_header(ts, t, "odom"), child_frame_id="base_link",
                    pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=T["geometry_msgs/msg/Pose"](
                        position=T["geometry_msgs/msg/Point"](x=oxy[i, 0], y=oxy[i, 1], z=0.0), orientation=oq), covariance=cov),
                    twist=T["geometry_msgs/msg/TwistWithCovariance"](
                        twist=T["geometry_msgs/msg/Twist"](linear=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                                                           angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)),
                        covariance=cov))
                w.write(c_odom, t, ts.serialize_cdr(odom, "nav_msgs/msg/Odometry"))
                for topic in (IMAGE_TOPIC, GT_TOPIC, ODOM_TOPIC) + ((INFO_TOPIC,) if c_info else ()):
                    counts[topic] = counts.get(topic, 0) + 1
            if bar:
                bar.update(1)
        if bar:
            bar.close()
    return counts


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


def bag_to_dataset(bag: str | Path, image_topic: str, pose_topic: str, out_dir: str | Path,
                   max_gap_s: float = 0.05, every: int = 1) -> Path:
    """Extract images with the pose nearest in time (within ``max_gap_s``) to PNGs + a CSV dataset."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    tt, pp, qq = pose_track(bag, pose_topic)
    rows, k = [], 0
    for t, rgb in image_stream(bag, image_topic):
        if isinstance(rgb, Exception):
            continue
        j = nearest(tt, t, int(max_gap_s * 1e9))
        if j is None:
            continue
        k += 1
        if (k - 1) % every:
            continue
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
