"""Build a map from a dataset, and add places to an existing map without retraining anything.

Stages: CNN descriptors (global and regional) of every image and of degraded (night/weather-like) copies of it,
and each image's appearance thumbnail (unreadable images skipped with a warning) -> per-map encoder (autoencoder + metric
learning on the map's geometry) -> latents -> SOM index -> pose model (place spacing, consensus radius) ->
covariance calibration on held-out map images (each left out of the map, once as is and once degraded to look
like night) -> atomic write of the map folder.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .. import __version__
from .appearance import PATCH, THUMB_LONG, THUMB_SHORT, fuse, thumbnail
from .augment import degrade
from .config import LocalizerConfig
from .dataset import Dataset
from .descriptor import (CNN_FILE, LAYOUT_GLOBAL, LAYOUT_VISLOC, LOCAL_CHANNELS, LOCAL_POOL, MAP_CNN_FILE, REGIONAL_BLOCK,
                         REGIONAL_DIM, REGIONAL_GRID, CnnDescriptor, centred, check_global_model, default_cnn_path,
                         map_cnn, regional_mean)
from .encoder import Encoder, EncoderTraining, train_device, train_encoder
from .errors import BackendError, DatasetError, ImageError, MapError
from .geo import datum_for
from .localizer import DENSE_MAX, Localizer, best_first
from .map_db import (APPEARANCE, KEYPOINT_FILES, LOCAL, REGIONAL, KeypointArrays, MapData, Places, load_map,
                     replace_keypoints, update_meta, write_map)
from .model_files import sha256_file
from .pose import (PLAIN_REFINE, REFINE_CHOICES, TEMPERATURES, Crowding, PoseModel, clearly_better, estimate, fit_alpha,
                   raw_covariance, weights)
from .preprocess import LowLight, load_image, prepare
from .som_index import SomIndex, grid_shape, train_som
from .verification import chamfer_to, local_mean, reranked

log = logging.getLogger(__name__)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


Progress = Callable[..., object]  # tqdm-compatible factory: progress(total=..., desc=...) -> bar


def _bar(progress: Progress | None, total: int, desc: str):
    return progress(total=total, desc=desc) if progress else _NoBar()


class Described(NamedTuple):
    """What ``describe_images`` found in a dataset's readable images."""

    desc: np.ndarray               # (N, D) global CNN descriptors
    kept: np.ndarray               # (N,) row indices of the images that could be read
    skipped: list[str]             # one message per unreadable image
    degraded: np.ndarray | None    # (N, K, D) descriptors of K degraded copies of each, or None
    thumbs: np.ndarray             # (N, appearance.DIM) appearance thumbnails
    regional: np.ndarray | None    # (N, REGIONAL_DIM) regional CNN descriptors, None from an older CNN export
    local: np.ndarray | None       # (N, P, LOCAL_CHANNELS) local CNN features (float16), likewise


def describe_images(ds: Dataset, cnn: CnnDescriptor, size: tuple[int, int], progress: Progress | None = None,
                    low_light: str = "auto", degraded_per_image: int = 0, seed: int = 0) -> Described:
    """CNN descriptors of a dataset's images, prepared as queries are (low light, size), their thumbnails; with
    ``degraded_per_image`` also the descriptors of that many degraded copies of each."""
    rng = np.random.default_rng(seed)
    enhancer = LowLight()
    out, reg, loc, deg, thumbs, kept, skipped = [], [], [], [], [], [], []
    bar = _bar(progress, len(ds), "describing images" + (f" (+{degraded_per_image} degraded each)"
                                                         if degraded_per_image else ""))
    try:
        for i in range(len(ds)):
            try:
                rgb = load_image(ds.path(i))
            except ImageError as e:
                skipped.append(str(e))
                log.warning("skipped: %s", e)
                bar.update(1)
                continue
            g, r, lf = cnn.describe(prepare(rgb, low_light, size, enhancer)[0])
            out.append(g)
            reg.append(r)
            loc.append(None if lf is None else lf.astype(np.float16))
            thumbs.append(thumbnail(rgb))
            if degraded_per_image:
                deg.append([cnn(prepare(degrade(rgb, rng), low_light, size, enhancer)[0])
                            for _ in range(degraded_per_image)])
            kept.append(i)
            bar.update(1)
    finally:
        bar.close()
    if not kept:
        raise DatasetError(f"none of the {len(ds)} images could be read (first error: {skipped[0]})")
    return Described(np.array(out, dtype=np.float32), np.array(kept), skipped,
                     np.array(deg, dtype=np.float32) if degraded_per_image else None,
                     np.array(thumbs, dtype=np.float32),
                     None if reg[0] is None else np.array(reg, dtype=np.float32),
                     None if loc[0] is None else np.array(loc, dtype=np.float16))


def place_spacing(xyz: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Median distance from a place to its nearest place at a different position (map units)."""
    xy = np.asarray(xyz[:, :2], dtype=float)
    if len(xy) < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(xy), min(sample, len(xy)), replace=False)
    nn = []
    for s in range(0, len(idx), 256):
        d = np.linalg.norm(xy[idx[s:s + 256], None] - xy[None], axis=2)
        d[d < 1e-6] = np.inf
        nn.append(d.min(1))
    nn = np.concatenate(nn)
    nn = nn[np.isfinite(nn)]
    return float(np.median(nn)) if nn.size else 1.0


def _places_from(ds: Dataset, kept: np.ndarray, session: str) -> Places:
    sub = ds.subset(kept)
    return Places(sub.images, sub.xyz, sub.quat, sub.latlonalt, sub.stamp_ns, [session] * len(sub), sub.condition)


RADIUS_CHOICES = (3.0, 10.0)  # consensus radius, in place spacings (used when consensus_radius_m is 0)
# weight of the regional descriptor against the global one until `visloc tune` fits one: with it, untuned maps find
# the place in 81 % of corridor frames instead of 60 %, 32 % of Nordland winter frames instead of 6 %, 63 % of the
# campus night photos instead of 61 % (docs/accuracy.md, "Methods tried")
DEFAULT_REGIONAL_WEIGHT = 1.0
# weight of the candidate verification by local CNN features (:mod:`.verification`) until `visloc tune` fits one
# (docs/accuracy.md, "Methods tried": untuned, the estimate within the radius in 90 % of corridor frames instead of 80 %,
# 44 % of Nordland winter frames instead of 32 %, about as many campus photos: night 62.5 % instead of 63.2 %)
DEFAULT_LOCAL_WEIGHT = 2.0
# weight of the learned keypoints' inlier counts in the verified fix (:func:`.keypoints.fuse_inliers`), with the
# 20 best candidates checked: campus night 69.0 % within 25 m (67.0 % at 10 candidates and weight 2), Nordland
# 59.4 % (59.0 %), corridor 94.6 % (94.6 %) (docs/accuracy.md, "The verified fix")
DEFAULT_KEYPOINT_WEIGHT = 1.0


def keypoint_extractor(config: LocalizerConfig, required: bool = False):
    """The learned keypoint extractor (:mod:`.keypoints`), or None (logged) when its exported models are missing
    and ``required`` is False: a map is then built without keypoints."""
    from .keypoints import KeypointExtractor

    try:
        return KeypointExtractor(config.backend, config.threads)
    except BackendError as e:
        if required:
            raise
        log.warning("%s: the map gets no keypoints (add them later with `visloc map keypoints MAPDIR`)", e)
        return None


def extract_keypoints(paths: list[Path], extractor, progress: Progress | None = None) -> KeypointArrays:
    """Every image's learned keypoints, for the map (float16 pixels, int8 descriptors, float16 scores)."""
    from .keypoints import pack_descriptors

    xy, desc, score = [], [], []
    bar = _bar(progress, len(paths), "extracting keypoints")
    try:
        for p in paths:
            kp = extractor(load_image(p))
            xy.append(kp.xy.astype(np.float16))
            desc.append(pack_descriptors(kp.desc))
            score.append(kp.scores.astype(np.float16))
            bar.update()
    finally:
        bar.close()
    return KeypointArrays(np.stack(xy), np.stack(desc), np.stack(score))


def keypoint_meta(extractor, arrays: KeypointArrays) -> dict:
    """``map.yaml``'s ``keypoints`` section: what extracted them (hashes checked at load) and their shape."""
    from .keypoint_export import EXTRACTOR, SIZES

    return {"files": list(KEYPOINT_FILES), "extractor": EXTRACTOR, "count": int(arrays.xy.shape[1]),
            "dim": int(arrays.desc.shape[2]), "sizes": {o: list(s) for o, s in SIZES.items()},
            "sha256": dict(extractor.sha256), "weight": DEFAULT_KEYPOINT_WEIGHT}


def add_keypoints(map_path: str | Path, config: LocalizerConfig | None = None,
                  progress: Progress | None = None) -> MapData:
    """Extract the learned keypoints of every place of an existing map (one built before them, or without them)
    from its images and add them to the folder: the arrays first (temp files, renamed), ``map.yaml`` last."""
    config = config or LocalizerConfig()
    m = load_map(map_path)
    root = Path(m.meta.get("image_root", "."))
    paths = [Path(i) if Path(i).is_absolute() else root / i for i in m.places.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MapError(f"{len(missing)} of the map's {len(paths)} images cannot be read (first: {missing[0]}): "
                       f"keypoints need the images the map was built from")
    extractor = keypoint_extractor(config, required=True)
    try:
        arrays = extract_keypoints(paths, extractor, progress)
    finally:
        extractor.close()
    replace_keypoints(m.path, arrays, keypoint_meta(extractor, arrays))
    return load_map(m.path)


def choose_setting(recall: dict, medians: dict, n: int, usual_t: float) -> tuple:
    """The calibration's choice among (radius, averaging, temperature) keys: most held-out images within 3
    spacings, then the lower median error, then the temperature nearest ``usual_t``; but each departure from the
    plain setting must win clearly (:func:`.pose.clearly_better`, ``n`` trials): first pose averaging against the
    consensus's best place alone (:data:`.pose.PLAIN_REFINE`), both at ``usual_t``, then a temperature other than
    ``usual_t`` against that.

    Why averaging must win clearly: a held-out map image lies between the places left in the map, about one
    spacing from the nearest, so averaging its neighbours brings the median error of these trials down by
    construction (corridor: 0.62 against 1.00 spacings at the same recall), while a query from a later traversal
    lies near a mapped place, where the best place alone is the sharper answer (corridor queries 95.5 % within
    2 frames against 90.1 % averaged)."""
    def top(keys):
        return max(keys, key=lambda k: (recall[k], -medians[k], -abs(np.log(k[2] / usual_t))))

    usual = top([k for k in recall if k[2] == usual_t])
    plain = [k for k in recall if k[2] == usual_t and k[1] == PLAIN_REFINE]
    if plain and not clearly_better(recall[usual], recall[top(plain)], n):
        usual = top(plain)
    best = top(list(recall))
    return best if clearly_better(recall[best], recall[usual], n) else usual


def calibrate(latents: np.ndarray, places: Places, index: SomIndex, model: PoseModel, config: LocalizerConfig,
              cnn: CnnDescriptor, encoder: Encoder, ds: Dataset, kept: np.ndarray, size: tuple[int, int],
              n_max: int = 200, seed: int = 0, progress: Progress | None = None,
              regional: np.ndarray | None = None, regional_weight: float = 0.0, local: np.ndarray | None = None,
              local_weight: float = 0.0) -> tuple[PoseModel, dict]:
    """Choose the consensus radius, vote temperature and pose averaging, and fit the covariance scale, on held-out
    map images.

    Each held-out image is left out of the map and localized twice (as is, and made night-like), ranked as the
    localizer will rank it (by the index; with ``regional`` descriptors of the places and a weight, by the
    similarity fused with theirs over every other place; with ``local`` features and a weight, the best places
    re-ranked by them, :mod:`.verification`); the (radius, averaging, temperature) that puts most of
    them within 3 place spacings of the truth wins (ties: lower median error, then the temperature nearest the
    model's), but pose averaging must beat the best place alone, and a temperature other than the model's the
    setting at the model's, by more than 2 trials and 1 % (:func:`choose_setting`); then ``alpha`` is fitted for it
    (95 % coverage). A radius set by the user (``consensus_radius_m``) is kept.
    """
    rng = np.random.default_rng(seed)
    n = len(places)
    if n < 3:
        return model, {"method": "none (fewer than 3 places)", "n": 0}
    pick = rng.choice(n, min(n_max, n), replace=False)
    trials = []  # (candidate ids, similarities, true place)
    bar = _bar(progress, len(pick), "calibrating covariance")
    fused = regional is not None and regional_weight > 0
    if fused:
        mean = regional_mean(regional)
        reg_c = centred(regional, mean)
    verify = local is not None and local_weight > 0
    if verify:
        lmean = local_mean(local)

    def lookup(z, r, lf, i):
        if not fused:
            h = index.query(z, config.top_k, config.n_probe, config.min_candidates, exclude=i)
            ids, s = h.ids, h.scores
        else:
            if n <= DENSE_MAX:  # every other place, as the localizer compares every place
                ids = np.delete(np.arange(n), i)
            else:
                ids = index.query(z, max(config.top_k, config.min_candidates), config.n_probe, config.min_candidates,
                                  exclude=i).ids
            s = fuse(latents[ids] @ z, [(reg_c[ids] @ centred(r, mean), regional_weight)])
            order = best_first(s, config.top_k)
            ids, s = ids[order], s[order]
        if verify:  # as the localizer verifies its best places
            order, s = reranked(s, chamfer_to(lf, local[ids], lmean), local_weight)
            ids = ids[order]
        trials.append((ids, s, i))

    try:
        for i in pick:
            lookup(np.asarray(latents[i]), None if regional is None else regional[i],
                   None if local is None else local[i], i)
            try:
                img = degrade(load_image(ds.path(int(kept[i]))), rng)
                g, r, lf = cnn.describe(prepare(img, config.low_light, size)[0])
                lookup(encoder(g), r, lf, i)
            except ImageError:
                pass
            bar.update(1)
    finally:
        bar.close()

    crowds, count = {}, Crowding(places.xyz)  # radius -> each place's crowd, for the places the trials hold
    held = np.unique(np.concatenate([ids for ids, _, _ in trials])) if trials else np.zeros(0, np.int64)

    def run(m: PoseModel):
        if m.crowding and m.radius not in crowds:
            crowd = np.zeros(n, np.float32)
            crowd[held] = count(held, m.radius)
            crowds[m.radius] = crowd
        errs, covs = [], []
        for ids, sims, i in trials:
            est = estimate(places.xyz[ids], sims, m, crowd=crowds[m.radius][ids] if m.crowding else None)
            errs.append(est.xyz[:2] - places.xyz[i, :2])
            covs.append(raw_covariance(places.xyz[ids, :2], weights(sims, m.temperature), est.xyz[:2], m.spacing))
        return np.array(errs), np.array(covs)

    radii = [config.consensus_radius_m] if config.consensus_radius_m else [k * model.spacing for k in RADIUS_CHOICES]
    recall, medians = {}, {}
    for rad in radii:
        for r in REFINE_CHOICES:
            for t in sorted(set(TEMPERATURES) | {model.temperature}):
                e = np.linalg.norm(run(replace(model, radius=rad, refine_spacings=r, temperature=t))[0], axis=1)
                recall[rad, r, t], medians[rad, r, t] = float(np.mean(e <= 3.0 * model.spacing)), float(np.median(e))
    best = choose_setting(recall, medians, len(trials), model.temperature)
    model = replace(model, radius=best[0], refine_spacings=best[1], temperature=best[2])
    errs, covs = run(model)
    model = replace(model, alpha=fit_alpha(errs, covs))
    key = "radius_refine_temperature"
    return model, {"method": "leave-one-out on map images, clean + night-like", "n": len(trials),
                   "regional_weight": regional_weight if fused else 0.0,
                   "local_weight": local_weight if verify else 0.0,
                   f"within_3_spacings_by_{key}": {"/".join(f"{v:g}" for v in k): round(x, 3) for k, x in recall.items()},
                   f"median_error_by_{key}": {"/".join(f"{v:g}" for v in k): round(x, 3) for k, x in medians.items()},
                   "median_error": round(medians[best], 3)}


def build_map(ds: Dataset, out: str | Path, config: LocalizerConfig | None = None, *, session: str = "map",
              overwrite: bool = False, progress: Progress | None = None, cnn_model: str | Path | None = None,
              training: EncoderTraining = EncoderTraining(), seed: int = 0,
              global_cnn: str | Path | None = None, keypoints: bool = True) -> MapData:
    """Build and write a map folder from ``ds``; returns the loaded map. ``global_cnn``: a place-recognition
    network of the user's own (ONNX, layout ``global``: uint8 images in, one descriptor out) instead of this
    package's CNN; it is copied into the map, which then has no regional descriptors or local features.
    ``keypoints``: extract every place's learned keypoints for the verified fix (when the extractor's models
    are installed)."""
    config = config or LocalizerConfig()
    out = Path(out)
    if out.exists() and not overwrite:
        raise MapError(f"{out} already exists (use --force to replace it)")
    train_device(training.device)  # a training device that cannot be had fails now, not after the CNN pass
    datum = None
    if ds.georeferenced:
        datum = datum_for(ds.latlonalt[:, 0], ds.latlonalt[:, 1], ds.latlonalt[:, 2])
        ds = ds.to_local(datum)
    layout = LAYOUT_GLOBAL if global_cnn else LAYOUT_VISLOC
    if global_cnn:
        check_global_model(global_cnn)
    cnn_path = Path(global_cnn or cnn_model or default_cnn_path())
    size = (config.image_long_side, config.image_short_side)
    cnn = CnnDescriptor(cnn_path, config.backend, config.threads, size, layout=layout)
    d = describe_images(ds, cnn, size, progress, config.low_light,
                        training.degraded_per_image if training.metric_weight > 0 else 0, seed=seed)
    desc, kept, skipped, degraded = d.desc, d.kept, d.skipped, d.degraded
    places = _places_from(ds, kept, session)
    spacing = place_spacing(places.xyz)
    extractor = keypoint_extractor(config) if keypoints else None
    kp = None
    if extractor is not None:
        try:
            kp = extract_keypoints([ds.path(int(i)) for i in kept], extractor, progress)
        finally:
            extractor.close()
    with tempfile.TemporaryDirectory(prefix="visloc-build-") as tmp:
        enc_path = Path(tmp) / "encoder.onnx"
        bar = _bar(progress, training.steps, "training encoder")
        try:
            enc_meta = train_encoder(desc, enc_path, training, progress=bar.update, positions=places.xyz,
                                     spacing=spacing, degraded=degraded)
        finally:
            bar.close()
        encoder = Encoder(enc_path, config.backend, config.threads, int(desc.shape[1]))
        latents = encoder.batch(desc)
        shape = grid_shape(len(latents))
        codebook = train_som(latents, shape, seed=seed)
        index = SomIndex(codebook, latents)
        places.cells = index.cells
        model = PoseModel(radius=config.consensus_radius_m or 10.0 * spacing, spacing=spacing, crowding=True)
        weight = DEFAULT_REGIONAL_WEIGHT if d.regional is not None else 0.0
        local_weight = DEFAULT_LOCAL_WEIGHT if d.local is not None else 0.0
        model, calib = calibrate(latents, places, index, model, config, cnn, encoder, ds, kept, size,
                                 seed=seed, progress=progress, regional=d.regional, regional_weight=weight,
                                 local=d.local, local_weight=local_weight)
        meta = {
            "generator": f"visloc_ros {__version__}",
            "frame_id": "map",
            "georeferenced": datum is not None,
            "datum": None if datum is None else {"lat": datum.lat, "lon": datum.lon, "alt": datum.alt},
            "has_orientation": places.quat is not None,
            "sessions": [session],
            "cnn": {"file": MAP_CNN_FILE if global_cnn else CNN_FILE, "layout": layout, "sha256": sha256_file(cnn_path),
                    "dim": int(desc.shape[1]), "image_long_side": size[0], "image_short_side": size[1]},
            "encoder": dict(enc_meta, sha256=sha256_file(enc_path)),
            "som": {"rows": shape[0], "cols": shape[1]},
            "appearance": {"file": APPEARANCE, "thumbnail": [THUMB_LONG, THUMB_SHORT], "patch": PATCH},
            "regional": None if d.regional is None else {
                "file": REGIONAL, "block": REGIONAL_BLOCK, "grid": REGIONAL_GRID, "dim": REGIONAL_DIM,
                "weight": weight},  # used until `visloc tune` fits one; the calibration above ranked with it
            "local": None if d.local is None else {
                "file": LOCAL, "block": REGIONAL_BLOCK, "pool": LOCAL_POOL, "channels": LOCAL_CHANNELS,
                "positions": int(d.local.shape[1]), "weight": local_weight},  # likewise
            "pose_model": {"spacing": spacing, "radius": model.radius, "alpha": model.alpha, "temperature": model.temperature,
                           "refine_spacings": model.refine_spacings, "crowding": model.crowding},
            "calibration": calib,
            "skipped_images": len(skipped),
            "image_root": str(ds.root.resolve()),
            "keypoints": None if kp is None else keypoint_meta(extractor, kp),
        }
        write_map(out, meta, places, desc, latents, codebook, enc_path, overwrite=overwrite, appearance=d.thumbs,
                  regional=d.regional, local=d.local, cnn_file=cnn_path if global_cnn else None, keypoints=kp)
        encoder.close()
    cnn.close()
    self_calibrate(out, config, progress, None if global_cnn else cnn_model)
    return load_map(out)


def self_calibrate(path: str | Path, config: LocalizerConfig | None = None, progress: Progress | None = None,
                   cnn_model: str | Path | None = None, store: bool = True) -> dict:
    """The sequence filter's covariance scale without odometry from the map's own images
    (:func:`.tune.self_calibrate_sequence`), stored in ``map.yaml`` (``sequence.without_odometry``, atomically;
    the other mode's fit is kept) unless ``store`` is False. Run by the build and by ``visloc tune --self``; a
    map whose write was cut short before it simply has none (scale 1, as maps built before it)."""
    from .tune import self_calibrate_sequence

    config = replace(config or LocalizerConfig(), map_path=str(path))
    loc = Localizer(path, config, cnn_model)
    try:
        rec = self_calibrate_sequence(loc, progress=progress)
        section = dict(loc.map.meta.get("sequence") or {})
    finally:
        loc.close()
    if store:
        section["without_odometry"] = rec
        update_meta(path, "sequence", section)
    return rec


def add_places(map_path: str | Path, ds: Dataset, session: str, config: LocalizerConfig | None = None,
               progress: Progress | None = None, cnn_model: str | Path | None = None) -> MapData:
    """Append ``ds`` to an existing map: same CNN, same encoder, same SOM; rewritten atomically."""
    config = config or LocalizerConfig()
    m = load_map(map_path, mmap=False)
    if session in m.meta.get("sessions", []):
        raise MapError(f"map {m.path} already has a session named '{session}' (choose another --session)")
    if m.datum is not None:
        ds = ds.to_local(m.datum)
    elif ds.georeferenced:
        raise DatasetError("the map is not georeferenced but the new places have lat/lon; give x,y instead")
    cnn_path, layout = map_cnn(m.path, m.meta, cnn_model)
    size = (int(m.meta["cnn"]["image_long_side"]), int(m.meta["cnn"]["image_short_side"]))
    cnn = CnnDescriptor(cnn_path, config.backend, config.threads, size, layout=layout)
    encoder = Encoder(m.encoder_path, config.backend, config.threads, int(m.meta["cnn"]["dim"]))
    d = describe_images(ds, cnn, size, progress, config.low_light)
    desc, kept, skipped = d.desc, d.kept, d.skipped
    new = _places_from(ds, kept, session)
    kp = None
    if m.keypoints is not None:  # the new places get keypoints too, from the extractor the map's were made with
        extractor = keypoint_extractor(config, required=True)
        try:
            extractor.check_map(m)
            kp = m.keypoints.concat(extract_keypoints([ds.path(int(i)) for i in kept], extractor, progress))
        finally:
            extractor.close()
    latents = np.concatenate([np.asarray(m.latents), encoder.batch(desc)])
    index = SomIndex(m.codebook, np.asarray(m.latents), m.places.cells)
    new.cells = index.add(latents)
    places = m.places.concat(new)
    meta = dict(m.meta)
    meta["sessions"] = list(meta.get("sessions", [])) + [session]
    meta["has_orientation"] = places.quat is not None and not np.isnan(places.quat).any()
    meta["skipped_images"] = int(meta.get("skipped_images", 0)) + len(skipped)
    with tempfile.TemporaryDirectory(prefix="visloc-add-") as tmp:
        enc_copy = Path(tmp) / "encoder.onnx"
        enc_copy.write_bytes(m.encoder_path.read_bytes())
        encoder.close()
        cnn.close()
        # thumbnails and regional descriptors only when the map has them for its old places too (older maps
        # stay without)
        app = None if m.appearance is None else np.concatenate([np.asarray(m.appearance), d.thumbs.astype(np.float16)])
        reg = None if m.regional is None or d.regional is None else np.concatenate(
            [np.asarray(m.regional), d.regional.astype(np.float16)])
        lf = None
        if m.local is not None and d.local is not None:
            if d.local.shape[1] != m.local.shape[1]:
                raise MapError(f"the new images give {d.local.shape[1]} local feature positions, the map's places "
                               f"{m.local.shape[1]}: build the map again with all the images")
            lf = np.concatenate([np.asarray(m.local), d.local])
        write_map(m.path, meta, places, np.concatenate([np.asarray(m.descriptors), desc.astype(np.float16)]),
                  latents, m.codebook, enc_copy, overwrite=True, appearance=app, regional=reg, local=lf,
                  cnn_file=cnn_path if layout == LAYOUT_GLOBAL else None, keypoints=kp)  # copied in before the folder is replaced
    fitted = (meta.get("sequence") or {}).get("without_odometry") or {}
    if str(fitted.get("method", "self")).startswith("self"):  # a fit on a labelled run stays until re-tuned
        self_calibrate(m.path, config, progress, cnn_model)
    return load_map(m.path)
