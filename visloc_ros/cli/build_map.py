"""``visloc build-map``: a map folder from a CSV dataset or a folder of photos with EXIF GPS."""
from __future__ import annotations

import argparse
import logging
import time

from .common import add_config_args, config_from, progress_factory

log = logging.getLogger("visloc")


def _at_least(lo: float, kind=float):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {text}")
        return v
    return parse


def add_parser(sub) -> None:
    p = sub.add_parser("build-map", help="build a map folder from images with positions",
                       description="Build a map: CNN descriptors, per-map encoder, SOM index, calibrated covariance.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images-csv", metavar="CSV", help="dataset CSV: image, lat,lon[,alt] or x,y[,z], [qx,qy,qz,qw|yaw]")
    src.add_argument("--images-dir", metavar="DIR", help="folder of photos carrying EXIF GPS")
    src.add_argument("--bag", metavar="BAG", help="rosbag2 with an image topic and a pose topic (images are "
                                                 "extracted to MAPDIR.images/ beside the map)")
    p.add_argument("--image-topic", default="/camera/image_raw", help="with --bag (default /camera/image_raw)")
    p.add_argument("--pose-topic", default="/ground_truth/pose",
                   help="with --bag: PoseStamped, PoseWithCovarianceStamped or Odometry in the map frame")
    p.add_argument("--every", type=_at_least(1, int), default=1, help="with --bag: keep every N-th image (default 1)")
    p.add_argument("--min-travel", type=_at_least(0.0), default=0.0, metavar="M",
                   help="with --bag: keep an image only once the robot has moved M metres (or turned --min-turn) "
                        "since the last one kept: drops the copies of one spot a stop leaves (default 0 = off)")
    p.add_argument("--min-turn", type=_at_least(0.0), default=0.0, metavar="DEG",
                   help="with --bag: ... or turned DEG degrees (default 0 = off)")
    p.add_argument("--out", required=True, metavar="MAPDIR", help="map folder to write (atomically)")
    p.add_argument("--force", action="store_true", help="replace an existing map folder")
    p.add_argument("--session", default="map", help="name of this capture session (default: map)")
    p.add_argument("--encoder-steps", type=int, default=600, help="autoencoder training steps (default 600)")
    p.add_argument("--latent-dim", type=int, default=256, help="latent size (default 256)")
    p.add_argument("--metric-learning", type=int, default=0, metavar="K",
                   help="train the encoder with a metric loss on the map's geometry using K night/weather-like "
                        "copies of each map image (default 0 = plain autoencoder; see docs/accuracy.md)")
    p.add_argument("--train-device", default="auto", metavar="DEV",
                   help="where the encoder trains: auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda "
                        "or cuda:N (default auto)")
    p.add_argument("--cnn", metavar="MODEL.onnx",
                   help="a place-recognition network of your own instead of the packaged ImageNet CNN: ONNX, one uint8 "
                        "input (N, H, W, 3) RGB normalised inside the graph, one (N, D) descriptor out; copied into "
                        "the map (which then has no regional descriptors or local features)")
    p.add_argument("--no-keypoints", action="store_true",
                   help="do not extract the places' learned keypoints (a smaller, faster map without a verified fix; "
                        "add them later with `visloc map keypoints MAPDIR`)")
    add_config_args(p)
    p.set_defaults(func=run)


def _keypoint_summary(m) -> str:
    if m.keypoints is None:
        return "no keypoints"
    size = sum((m.path / f).stat().st_size for f in m.meta["keypoints"]["files"]) / len(m) / 1024
    return f"{m.keypoints.xy.shape[1]} keypoints per place ({size:.1f} KiB per place)"


def run(args: argparse.Namespace) -> int:
    from ..core.build import build_map
    from ..core.dataset import read_csv, read_image_folder
    from ..core.encoder import EncoderTraining

    t0 = time.perf_counter()
    if args.images_csv:
        ds = read_csv(args.images_csv)
    elif args.bag:
        from pathlib import Path

        from ..tools.bag import bag_to_dataset
        folder = Path(str(Path(args.out).absolute()) + ".images")
        csv_path = bag_to_dataset(args.bag, args.image_topic, args.pose_topic, folder, every=args.every,
                                  min_travel_m=args.min_travel, min_turn_deg=args.min_turn)
        log.info("extracted %s", csv_path)
        ds = read_csv(csv_path)
    else:
        ds, skipped = read_image_folder(args.images_dir)
        for s in skipped:
            log.warning("skipped (no EXIF GPS): %s", s)
    cfg = config_from(args)
    m = build_map(ds, args.out, cfg, session=args.session, overwrite=args.force, progress=progress_factory(args),
                  training=EncoderTraining(latent_dim=args.latent_dim, steps=args.encoder_steps,
                                           degraded_per_image=max(args.metric_learning, 0),
                                           metric_weight=1.0 if args.metric_learning > 0 else 0.0,
                                           device=args.train_device),
                  global_cnn=args.cnn, keypoints=not args.no_keypoints)
    meta = m.meta
    seq = meta["sequence"]["without_odometry"]
    print(f"map {m.path}: {len(m)} places ({meta['skipped_images']} images skipped), "
          f"SOM {meta['som']['rows']}x{meta['som']['cols']}, latent {meta['encoder']['latent_dim']}, "
          f"{'georeferenced' if meta['georeferenced'] else 'local frame'}, CNN {meta['cnn']['file']} "
          f"({meta['cnn']['dim']}-d), "
          f"covariance scale {meta['pose_model']['alpha']:.2f} (sequence without odometry: places "
          f"{seq.get('cov_scale_places', 1.0):.2f}, particles {seq['cov_scale']:.2f}), encoder trained on "
          f"{meta['encoder']['device']} "
          f"in {meta['encoder']['train_seconds']:.1f} s, {_keypoint_summary(m)}, built in {time.perf_counter() - t0:.1f} s")
    return 0
