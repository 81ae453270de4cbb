"""``visloc add-places``: grow an existing map with new images (no retraining)."""
from __future__ import annotations

import argparse

from .common import add_config_args, config_from, progress_factory


def add_parser(sub) -> None:
    p = sub.add_parser("add-places", help="add images to an existing map (same CNN, encoder and SOM)",
                       description="Append a CSV dataset to a map as a new session; the map is rewritten atomically.")
    p.add_argument("--map", required=True, metavar="MAPDIR")
    p.add_argument("--images-csv", required=True, metavar="CSV")
    p.add_argument("--session", required=True, help="name of the new capture session")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.build import add_places
    from ..core.dataset import read_csv

    m = add_places(args.map, read_csv(args.images_csv), args.session, config_from(args), progress_factory(args))
    print(f"map {m.path}: now {len(m)} places in sessions {', '.join(m.meta['sessions'])}")
    return 0
