"""``visloc synth``: write a small generated place dataset (map.csv + queries.csv) to try the pipeline."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("synth", help="generate a small synthetic dataset (no download) for a first try",
                       description="Procedural scenes along a loop; queries revisit places shifted, some at night.")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--places", type=int, default=60)
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latlon", action="store_true", help="write lat/lon (a georeferenced map) instead of x/y")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.geo import Datum
    from ..core.synthetic import make_dataset

    datum = Datum(31.262, 34.804, 280.0) if args.latlon else None
    m, q = make_dataset(args.out, args.places, args.queries, args.seed, datum=datum)
    print(f"wrote {m} ({args.places} places) and {q} ({args.queries} queries)")
    return 0
