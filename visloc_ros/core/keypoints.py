"""Learned keypoints: the slow, sure check of a frame against its best candidate places.

The fast fix ranks places by pooled descriptors; a night photo then finds day photos of the right stretch of path
but often not which of them (the right place is among the 10 best far more often than first). This stage looks at
geometry: ALIKED keypoints and descriptors (learned, robust to light; exported to ONNX at set-up by
:mod:`.keypoint_export`, run here on ONNX Runtime) of the frame are matched against those the map stores for each of
its ``k`` best candidates (mutual nearest neighbours of the descriptors), and the matches that agree on one
epipolar geometry (a fundamental matrix, OpenCV's USAC MAGSAC) are counted. Right places share many consistent
matches; look-alike ones few. The counts are fused with the fast ranking (:func:`fuse_inliers`), and the pose
consensus then runs on the re-ranked candidates: the *verified fix*.

Images are resized to a fixed size per orientation (landscape 320x240, portrait 240x320, W x H; an aspect change
is a per-axis scaling, which keeps epipolar geometry valid) so that one exported graph serves each orientation.
The map stores each place's ``count`` keypoints (pixels, float16), descriptors (int8: x127 of the unit vector) and
scores (float16): ``keypoints_xy.npy``, ``keypoints_desc.npy``, ``keypoints_score.npy``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .backends import create_backend
from .errors import BackendError, MapError
from .keypoint_export import EXTRACTOR, SIZES, model_file
from .model_files import Profile, sha256_file

COUNT = 512  # keypoints per image
DESC_SCALE = 127.0  # int8 storage of the unit descriptors
MIN_MATCHES = 8  # fewer mutual matches cannot fix a fundamental matrix: 0 inliers
RANSAC_PX = 3.0  # epipolar distance (pixels at the canonical size) of an inlier
RANSAC_ITERS = 2000


@dataclass
class Keypoints:
    """One image's keypoints at the canonical size ``size`` (W, H) of its orientation."""

    xy: np.ndarray      # (N, 2) float32 pixels
    desc: np.ndarray    # (N, D) float32, L2-normalised
    scores: np.ndarray  # (N,) float32
    size: tuple[int, int]


def orientation(shape: tuple[int, ...]) -> str:
    """``portrait`` for images taller than wide, else ``landscape``."""
    return "portrait" if shape[0] > shape[1] else "landscape"


def keypoint_profile(o: str) -> Profile:
    """The one input shape of an orientation's graph (for a TensorRT engine)."""
    w, h = SIZES[o]
    return Profile((1, h, w, 3), (1, h, w, 3), (1, h, w, 3))


def keypoint_model_paths(dirs: list[Path] | None = None, name: str = EXTRACTOR, count: int = COUNT) -> dict[str, Path]:
    """The exported extractor for each orientation, from the models folders (:func:`.descriptor.models_dirs`)."""
    from .descriptor import models_dirs

    found = {}
    for o in SIZES:
        for d in dirs or models_dirs():
            if (d / model_file(o, name, count)).is_file():
                found[o] = d / model_file(o, name, count)
                break
        else:
            raise BackendError(f"keypoint model {model_file(o, name, count)} not found in "
                               f"{', '.join(map(str, dirs or models_dirs()))}; run ./scripts/setup.sh or "
                               f"`visloc models export --out models/`")
    return found


class KeypointExtractor:
    """RGB image (HxWx3 uint8, any size) -> :class:`Keypoints` at the canonical size of its orientation."""

    def __init__(self, backend: str = "auto", threads: int = 2, paths: dict[str, Path] | None = None):
        self.paths = paths or keypoint_model_paths()
        self.sha256 = {o: sha256_file(p) for o, p in self.paths.items()}
        self._backends = {o: create_backend(p, backend, threads, keypoint_profile(o)) for o, p in self.paths.items()}

    def __call__(self, rgb: np.ndarray) -> Keypoints:
        o = orientation(rgb.shape)
        w, h = SIZES[o]
        interp = cv2.INTER_AREA if rgb.shape[1] > w else cv2.INTER_LINEAR
        x = cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=interp)[None]
        try:
            out = np.asarray(self._backends[o].run(x), np.float32)
        except BackendError:
            raise
        except Exception as e:  # ONNX Runtime's own error types
            raise BackendError(f"keypoint model {self.paths[o]} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return Keypoints(out[:, :2].copy(), out[:, 3:].copy(), out[:, 2].copy(), (w, h))

    def check_map(self, m) -> None:
        """Refuse (one line) a map whose keypoints another extractor made: the hashes its ``map.yaml`` records."""
        want = (m.meta.get("keypoints") or {}).get("sha256") or {}
        if any(want.get(o) not in (None, h) for o, h in self.sha256.items()):
            raise MapError(f"map {m.path}'s keypoints were extracted by another keypoint model than the installed "
                           f"one: re-extract them with `visloc map keypoints {m.path}`")

    def close(self) -> None:
        for b in self._backends.values():
            b.close()


def pack_descriptors(desc: np.ndarray) -> np.ndarray:
    """Unit descriptors -> int8 (x127, rounded)."""
    return np.clip(np.rint(np.asarray(desc, np.float32) * DESC_SCALE), -127, 127).astype(np.int8)


def unpack_descriptors(desc: np.ndarray) -> np.ndarray:
    """int8 descriptors -> float32 unit vectors (re-normalised after the rounding)."""
    d = np.asarray(desc, np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)


def mutual_matches(d0: np.ndarray, d1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i0, i1) of the descriptor pairs that are each other's nearest neighbour (cosine)."""
    if len(d0) == 0 or len(d1) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    s = d0 @ d1.T
    a, b = s.argmax(1), s.argmax(0)
    i0 = np.flatnonzero(b[a] == np.arange(len(a)))
    return i0, a[i0]


def epipolar_inliers(x0: np.ndarray, x1: np.ndarray, px: float = RANSAC_PX) -> tuple[int, np.ndarray | None]:
    """The number of matched points (x0[i] <-> x1[i], pixels) consistent with one fundamental matrix (USAC
    MAGSAC), and that matrix; 0 and None when there are too few matches or no model is found."""
    if len(x0) < MIN_MATCHES:
        return 0, None
    try:
        F, mask = cv2.findFundamentalMat(np.ascontiguousarray(x0, np.float32), np.ascontiguousarray(x1, np.float32),
                                         cv2.USAC_MAGSAC, px, 0.999, RANSAC_ITERS)
    except cv2.error:  # OpenCV 5 raises on degenerate point sets instead of returning no model
        return 0, None
    if F is None or mask is None:
        return 0, None
    return int(mask.sum()), F[:3]


def fuse_inliers(scores: np.ndarray, inliers: np.ndarray, weight: float) -> np.ndarray:
    """The first ``len(inliers)`` candidates' scores plus ``weight`` x the z-score of their inlier counts among
    them, in units of the scores' spread over all candidates (the weight means the same on every map); the
    candidates beyond them, not checked, lose one such unit (below an average checked one)."""
    s = np.asarray(scores, np.float64).copy()
    k = len(inliers)
    if weight <= 0 or k < 2:
        return s.astype(np.float32)
    x = np.asarray(inliers, np.float64)
    unit = weight * max(s.std(), 1e-6)
    s[:k] += unit * (x - x.mean()) / max(x.std(), 1e-9)
    s[k:] -= unit
    return s.astype(np.float32)


def intrinsics(size: tuple[int, int], image_shape: tuple[int, ...], hfov_deg: float) -> np.ndarray:
    """The 3x3 pinhole matrix at the canonical ``size`` (W, H) of an image of ``image_shape`` (H, W, ...) taken with a
    horizontal field of view ``hfov_deg`` (square pixels, centred principal point in the original image)."""
    h0, w0 = image_shape[:2]
    f0 = 0.5 * w0 / np.tan(np.radians(hfov_deg) / 2)
    sx, sy = size[0] / w0, size[1] / h0
    return np.array([[f0 * sx, 0.0, 0.5 * size[0]], [0.0, f0 * sy, 0.5 * size[1]], [0.0, 0.0, 1.0]])


def relative_yaw(x0: np.ndarray, x1: np.ndarray, k: np.ndarray, px: float = RANSAC_PX) -> float | None:
    """The heading of camera 0 relative to camera 1 (radians, counter-clockwise seen from above, as a ROS yaw), from
    matched pixels (x0[i] <-> x1[i]) of two images with intrinsics ``k``: the essential matrix (USAC MAGSAC) and its
    decomposition; the rotation about the camera's vertical axis. None when the geometry cannot be found."""
    if len(x0) < MIN_MATCHES:
        return None
    n0 = cv2.undistortPoints(np.ascontiguousarray(x0, np.float64).reshape(-1, 1, 2), k, None).reshape(-1, 2)
    n1 = cv2.undistortPoints(np.ascontiguousarray(x1, np.float64).reshape(-1, 1, 2), k, None).reshape(-1, 2)
    try:
        e, mask = cv2.findEssentialMat(n0, n1, np.eye(3), cv2.USAC_MAGSAC, 0.999, px / k[0, 0])
        if e is None or e.shape != (3, 3):
            return None
        n, r, _, _ = cv2.recoverPose(e, n0, n1, np.eye(3), mask=mask)
    except cv2.error:
        return None
    if n < MIN_MATCHES:
        return None
    # r maps camera 0's coordinates into camera 1's (optical frames: x right, y down, z forward); camera 0's forward
    # axis seen from camera 1 points right of it (x > 0) when camera 0 is turned clockwise seen from above
    return float(-np.arctan2(r[0, 2], r[2, 2]))


class KeypointVerifier:
    """Checks a frame's keypoints against the stored keypoints of candidate places: inlier counts and timings."""

    def __init__(self, xy: np.ndarray, desc: np.ndarray):
        self.xy, self.desc = xy, desc  # (N_places, COUNT, 2) float16, (N_places, COUNT, D) int8 (memory maps)

    def inliers(self, kp: Keypoints, ids: np.ndarray, timings: dict[str, float] | None = None) -> np.ndarray:
        t_match = t_geom = 0.0
        out = np.zeros(len(ids), np.int32)
        for j, p in enumerate(np.asarray(ids)):
            t0 = time.perf_counter()
            i0, i1 = mutual_matches(kp.desc, unpack_descriptors(self.desc[p]))
            t1 = time.perf_counter()
            out[j] = epipolar_inliers(kp.xy[i0], np.asarray(self.xy[p][i1], np.float32))[0]
            t_match += t1 - t0
            t_geom += time.perf_counter() - t1
        if timings is not None:
            timings["kp_match"] = t_match * 1e3
            timings["kp_geometry"] = t_geom * 1e3
        return out

    def yaw_to(self, kp: Keypoints, place: int, k: np.ndarray) -> float | None:
        """The frame's heading relative to place ``place``'s (:func:`relative_yaw`), None when not found."""
        i0, i1 = mutual_matches(kp.desc, unpack_descriptors(self.desc[place]))
        return relative_yaw(kp.xy[i0], np.asarray(self.xy[place][i1], np.float32), k)
