"""Helpers shared by the subcommands: progress bars, the localizer config from flags + YAML, odometry CSVs."""
from __future__ import annotations

import argparse
import logging


def progress_factory(args: argparse.Namespace):
    """A tqdm factory (or None with --quiet) for the core's long loops."""
    if getattr(args, "quiet", False):
        return None
    from tqdm import tqdm

    return lambda total, desc: tqdm(total=total, desc=desc, unit="img" if "image" in desc else "it",
                                    dynamic_ncols=True, leave=True)


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="ROS 2 params file (e.g. config/localizer.yaml); flags override it")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], help="inference backend (default auto)")
    p.add_argument("--threads", type=int, help="CPU threads for inference (default 2)")
    p.add_argument("--low-light", choices=["off", "on", "auto"], help="low-light enhancement of queries")
    p.add_argument("--appearance-weight", type=float, metavar="W",
                   help="weight of the appearance thumbnails against the CNN (default: the map's fit from "
                        "`visloc tune`, 0 until tuned; 0 = off)")
    p.add_argument("--regional-weight", type=float, metavar="W",
                   help="weight of the regional CNN descriptor against the global one (default: the map's fit "
                        "from `visloc tune`; until tuned the build's, 1 on maps built with regional descriptors; 0 = off)")
    p.add_argument("--local-weight", type=float, metavar="W",
                   help="weight of the candidate verification by local CNN features (default: the map's fit from "
                        "`visloc tune`; until tuned the build's, 2 on maps built with local features; 0 = off)")
    p.add_argument("--keypoint-weight", type=float, metavar="W",
                   help="weight of the learned keypoints' inlier counts in the verified fix (default: the map's, 1 "
                        "on maps with keypoints; 0 = fast fix only)")
    p.add_argument("--camera-hfov", type=float, metavar="DEG", dest="camera_hfov_deg",
                   help="the camera's horizontal field of view: the verified fix then takes its yaw from the keypoint "
                        "matches with its best place (maps with orientations; default 0: the candidates' yaw)")
    p.add_argument("--keypoint-candidates", type=int, metavar="K",
                   help="best places checked by learned keypoints for the verified fix (default 20)")


def config_from(args: argparse.Namespace, **extra):
    from ..core.config import load_config

    cfg = load_config(args.config, backend=args.backend, threads=args.threads,
                      low_light=getattr(args, "low_light", None),
                      appearance_weight=getattr(args, "appearance_weight", None),
                      regional_weight=getattr(args, "regional_weight", None),
                      local_weight=getattr(args, "local_weight", None),
                      keypoint_weight=getattr(args, "keypoint_weight", None),
                      keypoint_candidates=getattr(args, "keypoint_candidates", None),
                      camera_hfov_deg=getattr(args, "camera_hfov_deg", None), **extra)
    logging.getLogger("visloc").debug("config: %s", cfg)
    return cfg


def read_odometry(path: str) -> dict[str, tuple[float, float, float]]:
    """Wheel odometry per image from a CSV with columns image, x, y, yaw (odom frame): {image: (x, y, yaw)}."""
    from ..core.dataset import read_table
    from ..core.errors import DatasetError

    cols, rows = read_table(path)
    missing = {"image", "x", "y", "yaw"} - set(cols)
    if missing:
        raise DatasetError(f"{path} lacks column(s) {', '.join(sorted(missing))} (needs image, x, y, yaw)")
    try:
        return {r["image"]: (float(r["x"]), float(r["y"]), float(r["yaw"])) for r in rows}
    except ValueError as e:
        raise DatasetError(f"{path}: not a number in x, y or yaw ({e})") from None
