"""``visloc serve``: the map as a web page with a photo upload, and its JSON API (:mod:`visloc_ros.web.server`)."""
from __future__ import annotations

import argparse

from .common import add_config_args, config_from


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the map as a web page: places on a map, upload a photo to localize it")
    p.add_argument("--map", required=True, metavar="MAPDIR", help="map folder built by `visloc build-map`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any free one)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                   help="uploads larger than this get HTTP 413 (default 20)")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..web.server import serve

    print(f"visloc serve: loading {args.map}", flush=True)
    serve(args.map, args.host, args.port, args.max_upload_mb, config_from(args, map_path=args.map),
          log_level="warning" if args.quiet else "info")
    return 0
