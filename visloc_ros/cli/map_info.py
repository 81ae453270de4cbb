"""``visloc map info`` (what a map folder holds) and ``visloc map keypoints`` (add learned keypoints to a map)."""
from __future__ import annotations

import argparse

import yaml


def add_parser(sub) -> None:
    p = sub.add_parser("map", help="inspect a map folder")
    s = p.add_subparsers(dest="map_command", required=True, metavar="ACTION")
    i = s.add_parser("info", help="print the map's metadata and checks")
    i.add_argument("map", metavar="MAPDIR")
    i.set_defaults(func=run)
    k = s.add_parser("keypoints", help="extract the places' learned keypoints from the map's images and add them to "
                                       "the map (maps built before them or with --no-keypoints)")
    k.add_argument("map", metavar="MAPDIR")
    k.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], help="inference backend (default auto)")
    k.add_argument("--threads", type=int, help="CPU threads for inference (default 2)")
    k.set_defaults(func=run_keypoints)


def run(args: argparse.Namespace) -> int:
    from ..core.map_db import load_map

    m = load_map(args.map)
    print(yaml.safe_dump(m.meta, sort_keys=False).rstrip())
    return 0


def run_keypoints(args: argparse.Namespace) -> int:
    from ..core.build import add_keypoints
    from ..core.config import load_config
    from .common import progress_factory

    m = add_keypoints(args.map, load_config(None, backend=args.backend, threads=args.threads), progress_factory(args))
    print(f"map {m.path}: {m.keypoints.xy.shape[1]} keypoints for each of its {len(m)} places")
    return 0
