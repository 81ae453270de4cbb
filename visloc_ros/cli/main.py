"""``visloc``: build maps, localize images, evaluate, manage models.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args)``; modules are
imported only when their command runs. Every :class:`VislocError` becomes one line on stderr and exit
code 1; an interrupted run exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = {
    "build-map": "visloc_ros.cli.build_map",
    "add-places": "visloc_ros.cli.add_places",
    "localize": "visloc_ros.cli.localize",
    "eval": "visloc_ros.cli.evaluate",
    "map": "visloc_ros.cli.map_info",
    "models": "visloc_ros.cli.models",
    "synth": "visloc_ros.cli.synth",
    "bag": "visloc_ros.cli.bag",
    "demo": "visloc_ros.cli.demo",
    "tune": "visloc_ros.cli.tune",
    "serve": "visloc_ros.cli.serve",
}


def command() -> list[str]:
    """The command line that runs this installation's ``visloc`` in another process (tests, benchmarks): its console
    script beside this Python, or ``python -m visloc_ros.cli.main`` where none is installed."""
    from pathlib import Path

    exe = Path(sys.executable).with_name("visloc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "visloc_ros.cli.main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visloc", description="Visual global localization without GPS: maps, "
                                "localization, evaluation.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, mod in COMMANDS.items():
        importlib.import_module(mod).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    from ..core.errors import VislocError

    try:
        return int(args.func(args) or 0)
    except VislocError as e:
        print(f"visloc {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"visloc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
