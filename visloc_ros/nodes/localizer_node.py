"""``localizer_node``: camera frames in, calibrated map-frame poses out (lifecycle node).

configure: load the map and models (a bad map fails the transition with one clear line);
activate: subscribe; deactivate: unsubscribe; cleanup: release the map and models. With ``autostart``
(default) the node brings itself to active, so a plain run localizes right away.

Subscribes ``image`` (sensor_msgs/Image) or ``image/compressed``, ``camera_info`` (logged once), ``odom``
(nav_msgs/Odometry, drives the sequence filter); sensor-data QoS, overridable by parameters.
Publishes ``/visloc/pose``, ``/visloc/fix`` (georeferenced maps), ``/visloc/status``, ``/diagnostics``,
``/visloc/places`` (transient local) and ``/visloc/debug_image`` (off by default).

On a map with learned keypoints the fix goes out on ``/visloc/pose`` as soon as it is made (the fast fix, or the
sequence filter's); the frame then goes to a second worker through its own keep-latest slot, which publishes the
verified fix (:meth:`~visloc_ros.core.localizer.Localizer.verify_fix`: the frame's own best candidates checked by
keypoints, a single-image answer) of the same image stamp on ``/visloc/pose_verified`` when it is ready. A frame that arrives while the verifier is busy replaces the one waiting (dropped and counted):
the camera callback and the fast fix never wait for it.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from visloc_ros.msg import LocalizationStatus

from ..core.config import LocalizerConfig, NodeConfig
from ..core.errors import ImageError, VislocError
from ..core.pose import yaw_from_quat
from . import conversions as conv
from .latest_slot import LatestSlot

_CONFIGS = (LocalizerConfig, NodeConfig)
_STATE_TEXT = {LocalizationStatus.LOCALIZED: "LOCALIZED", LocalizationStatus.UNCERTAIN: "UNCERTAIN",
               LocalizationStatus.NO_MAP: "NO_MAP", LocalizationStatus.LOST: "LOST", LocalizationStatus.ERROR: "ERROR"}


class LocalizerNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("localizer_node", **kwargs)
        for cls in _CONFIGS:
            for f in dataclasses.fields(cls):
                self.declare_parameter(f.name, f.default, ParameterDescriptor(description=f.metadata["doc"]))
        self.add_on_set_parameters_callback(self._validate_parameters)
        # status and diagnostics exist in every state, so an unconfigured node can say why
        self.status_pub = self.create_publisher(LocalizationStatus, "/visloc/status", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.loc = None
        self.seq = None
        self.slot = LatestSlot()
        self.worker = None
        self.verify_slot = LatestSlot()  # frames whose fast fix is out, for the verified fix
        self.verifier = None
        self.verified_latencies = deque(maxlen=500)
        self.verified_done = deque(maxlen=200)  # publication times, for the verified rate
        self.subs = []
        self.pubs = {}
        self.active = False
        self.latencies = deque(maxlen=500)
        self.processed = deque(maxlen=200)  # receipt times, for the rate
        self.withheld_in_row = 0
        self.last_accept = 0.0
        self.last_error = ""
        self.odom_last = None  # latest odometry pose (x, y, yaw), odom frame
        self.odom_received = 0.0  # time.monotonic() of its arrival
        self.odom_stale = False
        self.odom_stamp = None  # header stamp (s) of the latest accepted odometry
        self.camera_info_seen = False
        # inputs refused, by class (diagnostics): images that do not decode, frames whose localization raised,
        # odometry with a non-finite pose or going back in time, camera_info that cannot describe a camera
        self.rejected = {"images": 0, "frames_failed": 0, "odom": 0, "camera_info": 0}
        self.cfg = self.node_cfg = None
        self._configure_error = ""
        # diagnostics in every state; while there is no map it also repeats the NO_MAP status and its reason
        self.diag_timer = self.create_timer(float(self.get_parameter("diagnostics_period_s").value),
                                            self._publish_diagnostics)
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # ---------------------------------------------------------------- parameters
    def _params(self) -> dict:
        return {f.name: self.get_parameter(f.name).value for cls in _CONFIGS for f in dataclasses.fields(cls)}

    def _validate_parameters(self, params) -> SetParametersResult:
        values = self._params()
        values.update({p.name: p.value for p in params})
        try:
            LocalizerConfig.from_params(values)
            NodeConfig.from_params(values)
        except VislocError as e:
            return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- lifecycle
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        from ..core.localizer import Localizer

        try:
            params = self._params()
            self.cfg = LocalizerConfig.from_params(params)
            self.node_cfg = NodeConfig.from_params(params)
            if not self.cfg.map_path:
                raise VislocError("parameter map_path is not set (the map folder from `visloc build-map`)")
            t0 = time.perf_counter()
            self.loc = Localizer(self.cfg.map_path, self.cfg)
        except VislocError as e:
            self._configure_error = str(e)
            self.get_logger().error(f"configure failed: {e}")
            self._publish_status(LocalizationStatus.NO_MAP, Header(), message=str(e))
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
        n = self.node_cfg
        self.t_base_cam = conv.extrinsic_matrix(n.camera_x, n.camera_y, n.camera_z, n.camera_roll, n.camera_pitch,
                                                n.camera_yaw)
        if n.sequence:
            from ..core.filter_params import fit_summary
            from ..core.temporal import make_filter
            self.seq = make_filter(self.loc, kind=n.sequence_filter)
            self.get_logger().info(f"sequence filter: {fit_summary(self.loc.map.meta, n.sequence_filter)}")
        self.pubs["pose"] = self.create_publisher(PoseWithCovarianceStamped, "/visloc/pose", 10)
        if self.loc.verifies_keypoints:
            self.pubs["pose_verified"] = self.create_publisher(PoseWithCovarianceStamped, "/visloc/pose_verified", 10)
        if self.loc.georeferenced:
            self.pubs["fix"] = self.create_publisher(NavSatFix, "/visloc/fix", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs["places"] = self.create_publisher(MarkerArray, "/visloc/places", latched)
        if n.publish_debug_image:
            self.pubs["debug"] = self.create_publisher(Image, "/visloc/debug_image", 1)
        pl = self.loc.map.places
        self.pubs["places"].publish(conv.places_markers(pl.xyz, pl.cells, Header(frame_id=n.map_frame), n.marker_scale))
        self.get_logger().info(f"map {self.cfg.map_path}: {len(self.loc.map)} places, SOM "
                               f"{self.loc.index.shape[0]}x{self.loc.index.shape[1]}, backend {self.loc.backend_name}, "
                               f"loaded in {time.perf_counter() - t0:.2f} s")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        qos_opts = QoSOverridingOptions.with_default_policies()
        if self.node_cfg.use_compressed:
            self.subs.append(self.create_subscription(CompressedImage, "image/compressed", self._on_compressed,
                                                      qos_profile_sensor_data, qos_overriding_options=qos_opts))
        else:
            self.subs.append(self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data,
                                                      qos_overriding_options=qos_opts))
        self.subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data))
        self.subs.append(self.create_subscription(Odometry, "odom", self._on_odom, qos_profile_sensor_data))
        self.slot.reopen()
        self.active = True
        self.worker = threading.Thread(target=self._work, name="visloc-worker", daemon=True)
        self.worker.start()
        if "pose_verified" in self.pubs:
            self.verify_slot.reopen()
            self.verifier = threading.Thread(target=self._verify_work, name="visloc-verifier", daemon=True)
            self.verifier.start()
        self.get_logger().info(f"active: listening on {self.subs[0].topic_name}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        for s in self.subs:
            self.destroy_subscription(s)
        self.subs = []
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        self.active = False
        self.slot.close()
        self.verify_slot.close()
        for t in (self.worker, self.verifier):
            if t is not None:
                t.join(timeout=5.0)
        self.worker = self.verifier = None

    def _release(self) -> None:
        for p in self.pubs.values():
            self.destroy_publisher(p)
        self.pubs = {}
        if self.loc is not None:
            self.loc.close()
        self.loc = self.seq = None

    # ---------------------------------------------------------------- inputs
    def _accept(self) -> bool:
        rate = self.node_cfg.max_rate_hz
        now = time.monotonic()
        if rate > 0 and now - self.last_accept < 1.0 / rate:
            return False
        self.last_accept = now
        return True

    def _on_image(self, msg: Image) -> None:
        if self._accept():
            self.slot.put(("raw", msg, time.time()))

    def _on_compressed(self, msg: CompressedImage) -> None:
        if self._accept():
            self.slot.put(("compressed", msg, time.time()))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=float)
        if msg.width == 0 or msg.height == 0 or k.size != 9 or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
            self.rejected["camera_info"] += 1
            self.get_logger().warning(f"camera_info skipped: size {msg.width}x{msg.height}, fx {k[0] if k.size else '?'}, "
                                      f"fy {k[4] if k.size > 4 else '?'} (zero size or a non-finite or non-positive "
                                      f"focal length)", throttle_duration_sec=5.0)
            return
        if not self.camera_info_seen:
            self.camera_info_seen = True
            self.get_logger().info(f"camera_info: {msg.width}x{msg.height}, frame {msg.header.frame_id or '?'}")

    def _on_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        vals = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            qn = float(np.linalg.norm(vals[3:]))
        if not np.all(np.isfinite(vals)) or not np.isfinite(qn) or qn < 1e-6:
            self.rejected["odom"] += 1
            self.get_logger().warning("odom: non-finite pose or zero quaternion, message skipped",
                                   throttle_duration_sec=5.0)
            return
        stamp = conv.stamp_to_sec(msg.header.stamp)
        if self.odom_stamp is not None and stamp < self.odom_stamp:
            back = self.odom_stamp - stamp
            if back <= max(self.node_cfg.odom_timeout_s if self.node_cfg else 1.0, 1.0):
                self.rejected["odom"] += 1
                self.get_logger().warning(f"odom: stamp {back:.3f} s older than the last one, message skipped",
                                          throttle_duration_sec=5.0)
                return
            # a jump back by more than the odometry timeout is a clock reset (a bag looped, a simulator restarted)
            self.get_logger().warning(f"odom: time jumped back by {back:.1f} s: taken as a clock reset")
        self.odom_stamp = stamp
        self.odom_last = (float(vals[0]), float(vals[1]), float(yaw_from_quat(vals[3:] / qn)))
        self.odom_received = time.monotonic()

    def _fresh_odometry(self):
        """The latest odometry pose, or None while none has arrived or it is older than ``odom_timeout_s`` (the
        filter then runs without odometry; said once each way in the log)."""
        if self.odom_last is None:
            return None
        timeout = self.node_cfg.odom_timeout_s
        stale = timeout > 0 and time.monotonic() - self.odom_received > timeout
        if stale != self.odom_stale:
            self.odom_stale = stale
            self.get_logger().warning(f"odom: no message for {timeout:g} s, the sequence filter runs without odometry"
                                      if stale else "odom: messages again, the sequence filter uses odometry")
        return None if stale else self.odom_last

    # ---------------------------------------------------------------- worker
    def _work(self) -> None:
        while self.active:
            item = self.slot.get(timeout=0.2)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as e:  # keep answering whatever one frame does
                self.rejected["frames_failed"] += 1
                self.last_error = f"{type(e).__name__}: {e}"
                self.get_logger().error(f"frame failed: {type(e).__name__}: {e}", throttle_duration_sec=2.0)
                try:
                    self._publish_status(LocalizationStatus.ERROR, Header(stamp=item[1].header.stamp,
                                                                          frame_id=self.node_cfg.map_frame),
                                         message=f"frame failed: {type(e).__name__}: {e}"[:500])
                except Exception:  # the status itself could not be made: the log line above says it
                    pass

    def _process(self, kind: str, msg, received: float) -> None:
        header = Header(stamp=msg.header.stamp, frame_id=self.node_cfg.map_frame)
        t0 = time.perf_counter()
        try:
            rgb = conv.image_to_rgb(msg) if kind == "raw" else conv.compressed_to_rgb(msg)
        except ImageError as e:
            self.last_error = str(e)
            self.rejected["images"] += 1
            self.get_logger().warning(f"image skipped: {e}", throttle_duration_sec=2.0)
            self._publish_status(LocalizationStatus.ERROR, header, message=str(e))
            return
        stamp = conv.stamp_to_sec(msg.header.stamp)
        if self.seq is not None:
            fix = self.seq.update(rgb, odom_pose=self._fresh_odometry(), stamp=stamp)
        else:
            fix = self.loc.localize(rgb, stamp=stamp)
        infer_ms = (time.perf_counter() - t0) * 1e3
        latency = (time.time() - stamp) * 1e3 if stamp > 0 else (time.time() - received) * 1e3
        self.latencies.append(latency)
        self.processed.append(time.time())
        if fix.ok:
            self.withheld_in_row = 0
            self.pubs["pose"].publish(conv.pose_msg(fix, header, self.t_base_cam))
            if "fix" in self.pubs:
                self.pubs["fix"].publish(conv.navsat_msg(fix, header, self.t_base_cam, self.loc.datum))
            state = LocalizationStatus.LOCALIZED
        else:
            self.withheld_in_row += 1
            state = LocalizationStatus.LOST if self.withheld_in_row >= self.node_cfg.lost_after else LocalizationStatus.UNCERTAIN
        self._publish_status(state, header, fix, latency, infer_ms)
        if fix.ok and "pose_verified" in self.pubs:
            self.verify_slot.put((rgb, fix, header, stamp, received))
        if "debug" in self.pubs:
            self._publish_debug(rgb, fix, header)

    def _verify_work(self) -> None:
        while self.active:
            item = self.verify_slot.get(timeout=0.2)
            if item is None:
                continue
            rgb, fast, header, stamp, received = item
            try:
                fix = self.loc.verify_fix(rgb, fast)
            except Exception as e:  # keep answering whatever one frame does
                self.get_logger().error(f"verified fix failed: {type(e).__name__}: {e}")
                continue
            self.pubs["pose_verified"].publish(conv.pose_msg(fix, header, self.t_base_cam))
            self.verified_latencies.append((time.time() - stamp) * 1e3 if stamp > 0 else (time.time() - received) * 1e3)
            self.verified_done.append(time.time())

    def _publish_status(self, state: int, header: Header, fix=None, latency: float = 0.0, infer: float = 0.0,
                        message: str = "") -> None:
        s = LocalizationStatus()
        s.header = header
        s.state, s.state_text = state, _STATE_TEXT[state]
        s.som_cell = -1
        s.frames_dropped = self.slot.dropped
        s.latency_ms, s.inference_ms = float(latency), float(infer)
        s.message = message
        if fix is not None:
            s.best_place_id = int(fix.best_id)
            s.som_cell = int(fix.cell)
            s.som_row, s.som_col = self.loc.index.cell_rc(fix.cell)
            s.candidate_ids = [int(i) for i in fix.candidate_ids[: self.cfg.top_k]]
            s.candidate_scores = [float(v) for v in fix.candidate_scores[: self.cfg.top_k]]
            s.score, s.support, s.condition = float(fix.score), float(fix.support), fix.condition
            s.message = message or fix.message or ("" if state == LocalizationStatus.LOCALIZED else
                                                   f"{self.withheld_in_row} frames withheld in a row")
        self.status_pub.publish(s)

    def _publish_debug(self, rgb: np.ndarray, fix, header: Header) -> None:
        import cv2

        from ..core.preprocess import load_image

        root = Path(self.loc.map.meta.get("image_root", ""))
        h = 240
        q = cv2.resize(rgb, (int(rgb.shape[1] * h / rgb.shape[0]), h))
        try:
            ref = load_image(root / self.loc.map.places.images[fix.best_id])
            ref = cv2.resize(ref, (int(ref.shape[1] * h / ref.shape[0]), h))
        except ImageError:
            ref = np.zeros_like(q)
        self.pubs["debug"].publish(conv.rgb_to_image(np.hstack([q, ref]), header))

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        st = DiagnosticStatus(name="visloc: localizer", hardware_id="camera")
        lat = np.array(self.latencies) if self.latencies else np.zeros(0)
        now = time.time()
        recent = [t for t in self.processed if now - t <= 5.0]
        rate = len(recent) / 5.0
        if self.loc is None:
            st.level, st.message = DiagnosticStatus.ERROR, self._configure_error or "no map loaded"
            self._publish_status(LocalizationStatus.NO_MAP, Header(stamp=arr.header.stamp),
                                 message=st.message)
        elif self.withheld_in_row >= self.node_cfg.lost_after:
            st.level, st.message = DiagnosticStatus.WARN, "lost: fixes withheld"
        else:
            st.level, st.message = DiagnosticStatus.OK, "localizing" if rate > 0 else "waiting for images"
        vals = {"rate_hz": f"{rate:.2f}", "frames_dropped": str(self.slot.dropped),
                "latency_p50_ms": f"{np.percentile(lat, 50):.1f}" if lat.size else "",
                "latency_p99_ms": f"{np.percentile(lat, 99):.1f}" if lat.size else "",
                "backend": self.loc.backend_name if self.loc else "",
                "map_places": str(len(self.loc.map)) if self.loc else "0",
                "map_path": self.cfg.map_path if self.cfg else "", "last_image_error": self.last_error,
                **{f"rejected_{k}": str(v) for k, v in self.rejected.items()}}
        if self.verifier is not None:  # the verified fix's own rate, drops and latency (stamp to publication)
            vlat = np.array(self.verified_latencies) if self.verified_latencies else np.zeros(0)
            vals.update({"verified_rate_hz": f"{sum(now - t <= 5.0 for t in self.verified_done) / 5.0:.2f}",
                         "verified_frames_dropped": str(self.verify_slot.dropped),
                         "verified_latency_p50_ms": f"{np.percentile(vlat, 50):.1f}" if vlat.size else ""})
        st.values = [KeyValue(key=k, value=v) for k, v in vals.items()]
        arr.status = [st]
        self.diag_pub.publish(arr)


def main(args=None) -> None:
    rclpy.init(args=args)
    node = LocalizerNode()
    # one thread for the callbacks (they only hand frames and odometry over; inference runs in the node's worker):
    # rclpy's MultiThreadedExecutor re-queues tasks still waiting in its pool in a loop that holds the GIL, which
    # starved the worker for seconds at a time (ros2/rclpy#1452; 2 of 3 live demo runs lost most frames)
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node._stop_worker()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
