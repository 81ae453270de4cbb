"""The ``Localizer``: one loaded map plus its backends, answering ``localize(image) -> Fix``.

image -> (low light) -> resize -> CNN descriptor -> encoder latent -> SOM candidates -> candidate verification
-> pose consensus (votes divided by how crowded the map is around each candidate, on maps built with it) -> position,
yaw, calibrated covariance, lat/lon when the map is georeferenced. On maps with an
appearance or regional weight (the build's regional weight 1, or ``visloc tune``'s fit) the candidates are every
place (maps up to ``DENSE_MAX`` places, else the index's), ranked by the latents' similarity fused with the
appearance thumbnails' and the regional CNN descriptors' (:mod:`.appearance`; regional descriptors are compared
centred on the map's mean); on maps with local features the best ``top_k`` are then re-ranked by them
(:mod:`.verification`). That is the *fast fix*. On maps with learned keypoints, the *verified fix*
(:meth:`Localizer.verify_fix`) then checks the ``keypoint_candidates`` best places by keypoint matches and epipolar
geometry (:mod:`.keypoints`), fuses the inlier counts into their scores and runs the pose consensus again. The node,
the CLI and the benchmarks all call this object, so what they measure is what the robot runs.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .appearance import fuse, thumbnail
from .backends import one_blas_thread
from .config import LocalizerConfig
from .descriptor import CnnDescriptor, centred, map_cnn, regional_mean
from .encoder import Encoder
from .errors import ImageError, MapError
from .geo import enu_to_geodetic
from .keypoints import KeypointExtractor, KeypointVerifier, fuse_inliers, intrinsics
from .map_db import MapData, load_map
from .pose import Crowding, PoseModel, estimate, raw_covariance, weights, yaw_from_quat
from .preprocess import LowLight, load_image, prepare
from .som_index import SomIndex
from .verification import chamfer_to, local_mean, reranked

LOCALIZED, UNCERTAIN = "LOCALIZED", "UNCERTAIN"
DENSE_MAX = 20_000  # maps up to this many places are compared in full with each frame where that is needed


def best_first(sims: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest of ``sims`` (1-D), highest first."""
    order = np.argpartition(-sims, n - 1)[:n] if len(sims) > n else np.arange(len(sims))
    return order[np.argsort(-sims[order])]


@dataclass
class Embedding:
    """What a frame is matched with: the encoder's latent and, on maps that store them, its appearance thumbnail
    and regional CNN descriptor. (Several frames or map places: each field with a leading axis.)"""

    latent: np.ndarray
    thumb: np.ndarray | None = None
    regional: np.ndarray | None = None
    local: np.ndarray | None = None  # (P, LOCAL_CHANNELS) local CNN features (candidate verification)
    condition: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    chamfer: dict[int, float] | None = None  # a memo of its verification scores by place (`visloc tune` replays a
    #                                          frame under many settings; None: not kept)


@dataclass
class Fix:
    """One localization answer. ``ok`` is False when the fix is withheld (``message`` says why)."""

    ok: bool
    state: str
    xyz: np.ndarray
    yaw: float
    cov2: np.ndarray
    cov6: np.ndarray
    score: float
    support: float
    best_id: int
    cell: int
    candidate_ids: np.ndarray
    candidate_scores: np.ndarray
    lat: float = float("nan")
    lon: float = float("nan")
    alt: float = float("nan")
    condition: str = ""
    stamp: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    message: str = ""
    pose_scores: np.ndarray | None = None  # the scores the pose consensus weighed its top_k candidates by
    verified: bool = False  # checked by learned keypoints (:meth:`Localizer.verify_fix`)
    inliers: np.ndarray | None = None  # the keypoint inliers of the checked candidates (candidate_ids' first ones)

    @property
    def latency_ms(self) -> float:
        return float(sum(self.timings_ms.values()))


class Localizer:
    """Owns a loaded map, the CNN and the map's encoder; thread-compatible: one :meth:`localize` at a time, and
    beside it one :meth:`verify_fix` at a time (the node runs them on two workers)."""

    def __init__(self, map_path: str | Path | MapData, config: LocalizerConfig | None = None,
                 cnn_model: str | Path | None = None):
        one_blas_thread()
        self.config = config or LocalizerConfig(map_path=str(map_path))
        self.map = map_path if isinstance(map_path, MapData) else load_map(map_path)
        try:
            self._setup(cnn_model)
        except (TypeError, AttributeError, KeyError, ValueError) as e:  # a map.yaml value of the wrong type
            raise MapError(f"map {self.map.path}: map.yaml has a malformed value ({type(e).__name__}: {e}); "
                           f"rebuild the map") from None

    def _setup(self, cnn_model: str | Path | None) -> None:
        meta = self.map.meta
        cnn_path, layout = map_cnn(self.map.path, meta, cnn_model)
        c = self.config
        cnn_meta = meta.get("cnn", {})
        self._size = (int(cnn_meta.get("image_long_side", c.image_long_side)),
                      int(cnn_meta.get("image_short_side", c.image_short_side)))
        self.cnn = CnnDescriptor(cnn_path, c.backend, c.threads, self._size, layout=layout)
        self.encoder = Encoder(self.map.encoder_path, c.backend, c.threads, int(cnn_meta.get("dim", self.map.descriptors.shape[1])))
        self.index = SomIndex(self.map.codebook, np.asarray(self.map.latents), self.map.places.cells)
        pm = meta.get("pose_model", {})
        spacing = float(pm.get("spacing", 1.0))
        radius = c.consensus_radius_m or float(pm.get("radius", 10.0 * spacing))
        single = meta.get("single") or {}  # the single-image fit of `visloc tune`
        # untuned: the build's weights (the regional descriptor's, which its calibration used; thumbnails off)
        built = {"regional_weight": float((meta.get("regional") or {}).get("weight", 0.0)),
                 "local_weight": float((meta.get("local") or {}).get("weight", 0.0))}
        for name, arr, what in (("appearance_weight", self.map.appearance, "appearance thumbnails"),
                                ("regional_weight", self.map.regional, "regional CNN descriptors"),
                                ("local_weight", self.map.local, "local CNN features")):
            w = getattr(c, name) if getattr(c, name) >= 0 else float(single.get(name, built.get(name, 0.0)))
            if w > 0 and arr is None:
                raise MapError(f"map {self.map.path} has no {what} (written before them): rebuild it "
                               f"with `visloc build-map`, or set {name} 0")
            setattr(self, name, w)
        kmeta = meta.get("keypoints") or {}
        self.keypoint_weight = c.keypoint_weight if c.keypoint_weight >= 0 else float(kmeta.get("weight", 0.0))
        if c.keypoint_weight > 0 and self.map.keypoints is None:
            raise MapError(f"map {self.map.path} has no learned keypoints: add them with `visloc map keypoints "
                           f"{self.map.path}`, or set keypoint_weight 0")
        self._keypoints = (KeypointVerifier(self.map.keypoints.xy, self.map.keypoints.desc)
                           if self.map.keypoints is not None and self.keypoint_weight > 0 else None)
        self._extractor = None  # the keypoint extractor, loaded on the first verified fix
        self._dense = len(self.map) <= DENSE_MAX  # every place compared with a frame (fused ranking)
        self._thumbs = self._regional = None  # float32 copies, made on first use (maps up to DENSE_MAX places)
        self._regional_mean = self._local_mean = None
        # the fitted covariance factor and vote temperature belong to the fitted weights: used only with them
        fit = single if c.appearance_weight < 0 and c.regional_weight < 0 and c.local_weight < 0 else {}
        temperature = float(fit.get("temperature", pm.get("temperature", PoseModel.temperature)))
        self.pose_model = PoseModel(radius=radius, spacing=spacing, alpha=float(fit.get("alpha", pm.get("alpha", 1.0))),
                                    temperature=temperature,
                                    refine_spacings=float(fit.get("refine_spacings", pm.get("refine_spacings", 0.0))),
                                    crowding=bool(pm.get("crowding", False)))  # maps built before it: plain votes
        self._crowd, self._crowd_radius = None, None  # each place's crowd, filled as places become candidates
        self._crowd_lock = threading.Lock()  # the fast and the verified fix may run on two threads (the node)
        self._crowding = None  # the map's places sorted for counting (made on first use)
        self.datum = self.map.datum
        q = self.map.places.quat
        self._yaws = None if q is None or np.isnan(q).any() else yaw_from_quat(q)
        self._low_light = LowLight()

    @property
    def backend_name(self) -> str:
        return self.cnn.backend.name

    @property
    def georeferenced(self) -> bool:
        return self.datum is not None

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, str]:
        """Raw RGB -> CNN input (low light as configured, resized); also the illumination condition."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise ImageError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
        return prepare(rgb, self.config.low_light, self._size, self._low_light)

    def embed(self, image: np.ndarray | str | Path) -> Embedding:
        """Image (HxWx3 uint8 RGB, or a path) -> latent, thumbnail (maps that have them), illumination
        condition and stage timings (ms)."""
        t = {}
        t0 = time.perf_counter()
        rgb = load_image(image) if isinstance(image, (str, Path)) else image
        t["decode"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        x, cond = self.prepare(rgb)
        t["preprocess"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        d, r, lf = self.cnn.describe(x)
        t["cnn"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        z = self.encoder(d)
        t["encoder"] = (time.perf_counter() - t0) * 1e3
        thumb = None
        if self.map.appearance is not None:
            t0 = time.perf_counter()
            thumb = thumbnail(rgb)
            t["appearance"] = (time.perf_counter() - t0) * 1e3
        return Embedding(z, thumb, r if self.map.regional is not None else None,
                         lf if self.map.local is not None else None, cond, t)

    def localize(self, image: np.ndarray | str | Path, stamp: float | None = None) -> Fix:
        """Localize one image (HxWx3 uint8 RGB, or a path)."""
        e = self.embed(image)
        fix = self.localize_embedding(e)
        fix.stamp = stamp
        return fix

    @property
    def fused(self) -> bool:
        """Whether places are ranked by the fused similarity (an appearance or regional weight above 0)."""
        return self.appearance_weight > 0 or self.regional_weight > 0

    def similarities(self, e: Embedding, ids: np.ndarray | None = None) -> np.ndarray:
        """Each frame's similarity to the places ``ids`` (every place when None): the latents' cosines, fused
        with the thumbnails' and the regional descriptors' at the localizer's weights. ``e``'s fields are one
        frame's or (K, ...) for K frames; the result has the shape (..., len(ids))."""
        s, app, reg = self.channel_similarities(e, ids, self.appearance_weight > 0, self.regional_weight > 0)
        return fuse(s, [(app, self.appearance_weight), (reg, self.regional_weight)])

    def channel_similarities(self, e: Embedding, ids: np.ndarray | None = None, appearance: bool = True,
                             regional: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The unfused similarities of ``e`` to the places ``ids``: latents, thumbnails and regional descriptors
        (each None where not asked for or where the frame or the map has none)."""
        lat = np.asarray(self.map.latents, np.float32)  # float32 on disk: a view of the memory map, no copy
        s = ((lat if ids is None else lat[ids]) @ np.asarray(e.latent, np.float32).T).T
        a = r = None
        if appearance and e.thumb is not None and self.map.appearance is not None:
            if self._thumbs is None and self._dense:
                self._thumbs = np.asarray(self.map.appearance, np.float32)
            app = self._thumbs if self._thumbs is not None else self.map.appearance
            a = (np.asarray(app if ids is None else app[ids], np.float32) @ np.asarray(e.thumb, np.float32).T).T
        if regional and e.regional is not None and self.map.regional is not None:
            r = (self._regional_places(ids) @ self._centred(e.regional).T).T
        return s, a, r

    def _centred(self, r: np.ndarray) -> np.ndarray:
        if self._regional_mean is None:
            self._regional_mean = regional_mean(self.map.regional)
        return centred(r, self._regional_mean)

    def _regional_places(self, ids: np.ndarray | None) -> np.ndarray:
        if ids is not None and not self._dense:
            return self._centred(self.map.regional[ids])
        if self._regional is None:
            self._regional = self._centred(self.map.regional)
        return self._regional if ids is None else self._regional[ids]

    def crowd(self, ids: np.ndarray) -> np.ndarray:
        """The number of map places within the consensus radius of each of the places ``ids`` (the pose vote's
        divisor, :class:`.pose.Crowding`), counted the first time a place is a candidate and kept."""
        with self._crowd_lock:
            return self._crowd_of(ids)

    def _crowd_of(self, ids: np.ndarray) -> np.ndarray:
        r = self.pose_model.radius
        if self._crowd is None or self._crowd_radius != r:
            self._crowd, self._crowd_radius = np.full(len(self.map), -1.0, np.float32), r
        if self._crowding is None:
            self._crowding = Crowding(self.map.places.xyz)
        todo = np.unique(ids[self._crowd[ids] < 0])
        if len(todo):
            self._crowd[todo] = self._crowding(todo, r)
        return self._crowd[ids]

    def verifies(self, e: Embedding) -> bool:
        """Whether this frame's best places are re-ranked by local CNN features (:mod:`.verification`)."""
        return self.local_weight > 0 and e.local is not None and self.map.local is not None

    def verify(self, e: Embedding, ids: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The places ``ids`` (with similarities ``sims``) re-ranked by the frame's local features: their order best
        first (indices into ``ids``) and their verified scores in that order."""
        if self._local_mean is None:
            self._local_mean = local_mean(self.map.local)
        memo = e.chamfer
        todo = ids if memo is None else np.array([i for i in ids.tolist() if i not in memo], dtype=ids.dtype)
        ch = chamfer_to(e.local, self.map.local[todo], self._local_mean) if len(todo) else np.zeros(0)
        if memo is not None:
            memo.update(zip(todo.tolist(), ch.tolist()))
            ch = np.array([memo[i] for i in ids.tolist()])
        return reranked(sims, ch, self.local_weight)

    def localize_embedding(self, e: Embedding, n_candidates: int | None = None,
                           fused: np.ndarray | None = None, verify: bool = True) -> Fix:
        """Index lookup (or, with an appearance or regional weight, every place by fused similarity), candidate
        verification (with a local weight: the ``top_k`` best re-ranked by local CNN features) + pose.

        The pose uses the ``top_k`` best places; ``n_candidates`` (>= top_k) places are returned in the
        fix for a temporal filter, with their similarities (the first ``top_k`` in their verified order).
        ``fused``: the frame's fused
        similarity to every place when the caller has it already (``visloc tune`` computes a whole run's at
        once); maps up to ``DENSE_MAX`` places. ``verify=False``: no verification (the sequence filters, which
        replace the fix's position with their own and verify only their own few best places, through
        :meth:`verify`).
        """
        c = self.config
        t = e.timings_ms
        t0 = time.perf_counter()
        n = max(n_candidates or c.top_k, c.top_k)
        if fused is not None or self.fused:
            if self._dense:  # every place (no row copies: ids None)
                ids, fused = None, self.similarities(e) if fused is None else fused
            else:
                ids = self.index.query(e.latent, max(n, c.min_candidates), c.n_probe, c.min_candidates).ids
                fused = self.similarities(e, ids)
            order = best_first(fused, n)
            ids, sims = (order if ids is None else ids[order]), fused[order]
        else:
            hits = self.index.query(e.latent, n, c.n_probe, c.min_candidates)
            ids, sims = hits.ids, hits.scores
        t["index"] = (time.perf_counter() - t0) * 1e3
        top, top_s = ids[:c.top_k], sims[:c.top_k]
        if verify and self.verifies(e):  # re-rank the best places; the fix keeps their similarities (filters read them)
            t0 = time.perf_counter()
            order, top_s = self.verify(e, top, top_s)
            top = top[order]
            ids = np.concatenate([top, ids[c.top_k:]])
            sims = np.concatenate([sims[:c.top_k][order], sims[c.top_k:]])
            t["verify"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        pl = self.map.places
        est = estimate(pl.xyz[top], top_s, self.pose_model, None if self._yaws is None else self._yaws[top],
                       self.crowd(top) if self.pose_model.crowding else None)
        best = int(top[est.inliers[np.argmax(top_s[est.inliers])]])
        score = float(np.clip(sims[0], 0.0, 1.0))  # the (verified) best place's similarity
        ok = score >= c.min_score
        fix = Fix(ok, LOCALIZED if ok else UNCERTAIN, est.xyz, est.yaw, est.cov2, est.cov6, score, est.support,
                  best, int(self.index.cells[best]), ids, sims, condition=e.condition, timings_ms=t,
                  message="" if ok else f"best match score {score:.3f} is below min_score {c.min_score:.3f}",
                  pose_scores=np.asarray(top_s, np.float32))
        self.set_geodetic(fix)
        t["pose"] = (time.perf_counter() - t0) * 1e3
        return fix

    @property
    def verifies_keypoints(self) -> bool:
        """Whether this map and configuration give a verified fix (learned keypoints stored, weight above 0)."""
        return self._keypoints is not None

    def keypoint_extractor(self) -> KeypointExtractor:
        """The learned keypoint extractor the map's keypoints were made with (loaded once; a model whose hash the
        map did not record is refused)."""
        if self._extractor is None:
            ex = KeypointExtractor(self.config.backend, self.config.threads)
            try:
                ex.check_map(self.map)
            except MapError:
                ex.close()
                raise
            self._extractor = ex
        return self._extractor

    def verify_fix(self, rgb: np.ndarray, fix: Fix) -> Fix:
        """The verified fix of a frame (HxWx3 uint8 RGB) from its fast fix: the ``keypoint_candidates`` best of the
        fix's candidates checked by learned keypoints, their inlier counts fused into the scores the pose consensus
        weighed (:func:`.keypoints.fuse_inliers`), the consensus run again. Its covariance is the fast fix's spread
        of candidates, taken about the verified position (the map's calibrated scale): it widens when the keypoints
        move the fix away from where the fast ranking's candidates agree. Timings: the fast fix's plus
        ``kp_extract``, ``kp_match``, ``kp_geometry`` and ``kp_pose``."""
        if not self.verifies_keypoints:
            raise MapError(f"map {self.map.path} gives no verified fix (no learned keypoints, or keypoint_weight 0)")
        c = self.config
        t = dict(fix.timings_ms)
        fast_top = top = np.asarray(fix.candidate_ids[:c.top_k])
        k = min(c.keypoint_candidates, len(top))
        t0 = time.perf_counter()
        kp = self.keypoint_extractor()(rgb)
        t["kp_extract"] = (time.perf_counter() - t0) * 1e3
        inliers = self._keypoints.inliers(kp, top[:k], t)
        t0 = time.perf_counter()
        s = fuse_inliers(fix.pose_scores[:len(top)], inliers, self.keypoint_weight)
        order = np.argsort(-s, kind="stable")
        top, s = top[order], s[order]
        pl = self.map.places
        est = estimate(pl.xyz[top], s, self.pose_model, None if self._yaws is None else self._yaws[top],
                       self.crowd(top) if self.pose_model.crowding else None)
        best = int(top[est.inliers[np.argmax(s[est.inliers])]])
        pm = self.pose_model
        cov2 = pm.alpha ** 2 * raw_covariance(pl.xyz[fast_top, :2], weights(fix.pose_scores[:len(top)], pm.temperature),
                                              est.xyz[:2], pm.spacing)
        est.cov6[:2, :2] = cov2
        yaw = est.yaw
        if c.camera_hfov_deg > 0 and self._yaws is not None:  # the frame's heading from its matches with the best place
            rel = self._keypoints.yaw_to(kp, best, intrinsics(kp.size, rgb.shape, c.camera_hfov_deg))
            if rel is not None:
                yaw = float(np.arctan2(np.sin(self._yaws[best] + rel), np.cos(self._yaws[best] + rel)))
        ids = np.concatenate([top, fix.candidate_ids[len(top):]])
        sims = np.concatenate([np.asarray(fix.candidate_scores[:len(top)])[order], fix.candidate_scores[len(top):]])
        out = Fix(fix.ok, fix.state, est.xyz, yaw, cov2, est.cov6, fix.score, est.support, best,
                  int(self.index.cells[best]), ids, sims, condition=fix.condition, stamp=fix.stamp, timings_ms=t,
                  message=fix.message, pose_scores=s, verified=True, inliers=inliers)
        self.set_geodetic(out)
        t["kp_pose"] = (time.perf_counter() - t0) * 1e3
        return out

    def set_geodetic(self, fix: Fix) -> None:
        """Fill the fix's lat/lon/alt from its map-frame position (georeferenced maps)."""
        if self.datum is not None:
            lat, lon, alt = enu_to_geodetic(fix.xyz, self.datum)
            fix.lat, fix.lon, fix.alt = float(lat), float(lon), float(alt)

    def predict_gps(self, image: np.ndarray | str | Path) -> np.ndarray:
        """``np.array([lat, lon])`` of an image (RGB array or path); the map must be georeferenced."""
        if not self.georeferenced:
            raise MapError(f"map {self.map.path} is not georeferenced: predict_gps needs a map built from lat/lon")
        f = self.localize(image)
        return np.array([f.lat, f.lon])

    def close(self) -> None:
        self.cnn.close()
        self.encoder.close()
        if self._extractor is not None:
            self._extractor.close()
