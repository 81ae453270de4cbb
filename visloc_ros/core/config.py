"""Typed configuration of the pipeline, with its defaults in one place.

The same YAML file (``config/localizer.yaml``, ROS 2 parameter format ``/**: ros__parameters:``) feeds the
node (as ROS parameters) and the CLI (through :func:`load_params`). Each field's description is the
parameter's description in the node.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import VislocError

FILTER_KINDS = ("particles", "places")  # the sequence filters (core/temporal.py)


def _f(default, doc: str, choices: tuple | None = None):
    return field(default=default, metadata={"doc": doc, "choices": choices})


@dataclass
class LocalizerConfig:
    """Everything the ROS-free :class:`~visloc_ros.core.localizer.Localizer` needs besides the map."""

    map_path: str = _f("", "Map folder built by `visloc build-map`.")
    backend: str = _f("auto", "Inference backend: auto, onnxruntime or tensorrt.", ("auto", "onnxruntime", "tensorrt"))
    threads: int = _f(2, "CPU threads for inference (intra-op).")
    image_long_side: int = _f(320, "CNN input size, long side in pixels (portrait images keep their orientation).")
    image_short_side: int = _f(240, "CNN input size, short side in pixels.")
    low_light: str = _f("auto", "Low-light enhancement (CLAHE + auto gamma): off, on, or auto (dark frames only).",
                        ("off", "on", "auto"))
    top_k: int = _f(20, "Candidates scored exactly and used for the pose consensus.")
    n_probe: int = _f(8, "SOM cells probed per query (best-matching cells first).")
    min_candidates: int = _f(256, "Probe more cells until at least this many places are scored.")
    consensus_radius_m: float = _f(0.0, "Candidates further than this from the consensus are dropped; 0 = from map spacing.")
    min_score: float = _f(0.0, "Withhold a fix whose score (0..1) is below this.")
    appearance_weight: float = _f(-1.0, "Weight of the appearance thumbnails against the CNN when matching places; "
                                        "negative = the map's fitted weight (visloc tune; 0 until tuned), 0 = off.")
    regional_weight: float = _f(-1.0, "Weight of the regional CNN descriptor (4x4 grid over a mid-level block) "
                                      "against the global one; negative = the map's fitted weight, 0 = off.")
    local_weight: float = _f(-1.0, "Weight of the candidate verification by local CNN features (the best places "
                                   "re-ranked by them); negative = the map's fitted weight (visloc tune; the "
                                   "build's 2 until tuned), 0 = off.")
    keypoint_candidates: int = _f(20, "Best places checked by learned keypoints for the verified fix (maps with keypoints).")
    camera_hfov_deg: float = _f(0.0, "Horizontal field of view of the camera (degrees; the map's images taken with the "
                                     "same camera); with it the verified fix takes its yaw from the keypoint "
                                     "matches with its best place; 0 = the candidates' own orientation.")
    keypoint_weight: float = _f(-1.0, "Weight of the keypoint inlier counts in the verified fix; negative = the map's "
                                      "(1 from the build), 0 = no verified fix.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            choices = f.metadata.get("choices")
            if choices and v not in choices:
                raise VislocError(f"parameter {f.name}='{v}' must be one of {', '.join(choices)}")
        for name in ("threads", "image_long_side", "image_short_side", "top_k", "n_probe", "min_candidates",
                     "keypoint_candidates"):
            if getattr(self, name) < 1:
                raise VislocError(f"parameter {name} must be >= 1 (got {getattr(self, name)})")
        if self.image_short_side > self.image_long_side:
            raise VislocError("parameter image_short_side must not exceed image_long_side")
        if not 0.0 <= self.min_score <= 1.0:
            raise VislocError(f"parameter min_score must be within [0, 1] (got {self.min_score})")
        if not 0.0 <= self.camera_hfov_deg < 180.0:
            raise VislocError(f"parameter camera_hfov_deg must be within [0, 180) (got {self.camera_hfov_deg})")
        if self.consensus_radius_m < 0:
            raise VislocError("parameter consensus_radius_m must be >= 0")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "LocalizerConfig":
        """Pick this config's fields out of a flat parameter dict (other keys belong to the node)."""
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in params:
                kw[f.name] = _coerce(f.name, params[f.name], type(f.default))
        return cls(**kw)


def _coerce(name: str, value: Any, typ: type) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise VislocError(f"parameter {name} must be {typ.__name__} (got {value!r})")
    return value


def load_params(path: str | Path) -> dict[str, Any]:
    """The flat ``ros__parameters`` of a ROS 2 params YAML (the ``/**`` section, else the first node)."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as e:
        raise VislocError(f"cannot read params file {p}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise VislocError(f"params file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not doc:
        raise VislocError(f"params file {p} has no node section with ros__parameters")
    section = doc.get("/**", next(iter(doc.values())))
    if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
        raise VislocError(f"params file {p}: expected '<node or /**>: ros__parameters: {{...}}'")
    return dict(section["ros__parameters"])


def load_config(path: str | Path | None = None, **overrides: Any) -> LocalizerConfig:
    """A :class:`LocalizerConfig` from a params YAML (optional) plus explicit overrides (None = not set)."""
    params = load_params(path) if path else {}
    params.update({k: v for k, v in overrides.items() if v is not None})
    return LocalizerConfig.from_params(params)


@dataclass
class NodeConfig:
    """The ROS node's own parameters (topics are remapped, not configured: ``image``, ``odom`` ...)."""

    use_compressed: bool = _f(False, "Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image.")
    map_frame: str = _f("map", "Frame of the published pose (the map's frame, REP-105).")
    base_frame: str = _f("base_link", "Robot body frame whose pose is published (after the camera extrinsic).")
    camera_x: float = _f(0.0, "Camera position in base_frame, x (m).")
    camera_y: float = _f(0.0, "Camera position in base_frame, y (m).")
    camera_z: float = _f(0.0, "Camera position in base_frame, z (m).")
    camera_roll: float = _f(0.0, "Camera orientation in base_frame, roll (rad).")
    camera_pitch: float = _f(0.0, "Camera orientation in base_frame, pitch (rad).")
    camera_yaw: float = _f(0.0, "Camera orientation in base_frame, yaw (rad).")
    max_rate_hz: float = _f(0.0, "Process at most this many frames per second; 0 = as many as the worker takes.")
    sequence: bool = _f(False, "Accumulate evidence across frames (untuned maps: the place filter without odometry, the particle filter while odom arrives).")
    sequence_filter: str = _f("", "With sequence: 'particles' or 'places' (histogram filter over the map's places) in both modes; '' = the map's choice (untuned: places without odometry, particles with it).")
    odom_timeout_s: float = _f(1.0, "With sequence: odometry received longer ago than this (s) is stale and not used (the filter runs without odometry until it resumes); 0 = never stale.")
    lost_after: int = _f(10, "Consecutive withheld frames before the state becomes LOST.")
    publish_debug_image: bool = _f(False, "Publish /visloc/debug_image (query beside its best map image).")
    autostart: bool = _f(True, "Configure and activate at start-up, so a plain run localizes right away.")
    diagnostics_period_s: float = _f(1.0, "Period of /diagnostics (and of the NO_MAP status while no map is loaded), s; read at start-up.")
    marker_scale: float = _f(0.5, "Size of the place markers in /visloc/places (m).")

    def __post_init__(self) -> None:
        if self.max_rate_hz < 0:
            raise VislocError("parameter max_rate_hz must be >= 0")
        if self.sequence_filter not in ("", *FILTER_KINDS):
            raise VislocError(f"parameter sequence_filter must be '', 'particles' or 'places' (got {self.sequence_filter!r})")
        if self.odom_timeout_s < 0:
            raise VislocError("parameter odom_timeout_s must be >= 0")
        if self.lost_after < 1:
            raise VislocError("parameter lost_after must be >= 1")
        if self.diagnostics_period_s <= 0:
            raise VislocError("parameter diagnostics_period_s must be > 0")
        if self.marker_scale <= 0:
            raise VislocError("parameter marker_scale must be > 0")
        if not self.map_frame or not self.base_frame:
            raise VislocError("parameters map_frame and base_frame must not be empty")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "NodeConfig":
        kw = {f.name: _coerce(f.name, params[f.name], type(f.default)) for f in dataclasses.fields(cls) if f.name in params}
        return cls(**kw)
