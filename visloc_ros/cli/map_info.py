"""``visloc map info``: what a map folder holds."""
from __future__ import annotations

import argparse

import yaml


def add_parser(sub) -> None:
    p = sub.add_parser("map", help="inspect a map folder")
    s = p.add_subparsers(dest="map_command", required=True, metavar="ACTION")
    i = s.add_parser("info", help="print the map's metadata and checks")
    i.add_argument("map", metavar="MAPDIR")
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.map_db import load_map

    m = load_map(args.map)
    print(yaml.safe_dump(m.meta, sort_keys=False).rstrip())
    return 0
