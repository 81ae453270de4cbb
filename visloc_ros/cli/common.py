"""Helpers shared by the subcommands: progress bars and the localizer config from flags + YAML."""
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


def config_from(args: argparse.Namespace, **extra):
    from ..core.config import load_config

    cfg = load_config(args.config, backend=args.backend, threads=args.threads,
                      low_light=getattr(args, "low_light", None), **extra)
    logging.getLogger("visloc").debug("config: %s", cfg)
    return cfg
