"""``visloc eval``: metrics of a prediction file against the truth, as JSON and plots."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score predictions against ground truth (JSON + plots)",
                       description="Errors (median/mean/p90), top-1 within each radius, 95%%-ellipse coverage, "
                                   "latency percentiles; per condition when the truth has a 'condition' column.")
    p.add_argument("--pred", required=True, metavar="PRED.csv", help="output of `visloc localize`")
    p.add_argument("--truth", required=True, metavar="QUERIES.csv", help="dataset CSV with true positions")
    p.add_argument("--radius", type=float, nargs="+", default=[25.0, 50.0], help="radii for top-1 recall (default 25 50)")
    p.add_argument("--map", metavar="MAPDIR", help="draw the map's places in the plot")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for metrics.json and plots")
    p.set_defaults(func=run)


def _fmt_line(name: str, s: dict, radii: list[float]) -> str:
    parts = [f"{name:>10}: n={s['n']}"]
    if "median_error" in s:
        parts.append(f"median {s['median_error']:.2f}")
    parts += [f"<={r:g}: {100 * s[f'within_{r:g}']:.1f}%" for r in radii]
    if "coverage_95" in s:
        parts.append(f"95%-ellipse coverage {100 * s['coverage_95']:.1f}%")
    if "yaw_error_deg" in s:
        parts.append(f"yaw error median {s['yaw_error_deg']['median']:.1f} deg")
    if "latency_ms" in s:
        parts.append(f"latency p50 {s['latency_ms']['p50']:.1f} ms")
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    from ..core.metrics import evaluate
    from ..tools.plots import plot_eval

    report, matched = evaluate(args.pred, args.truth, args.radius)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    places = None
    if args.map:
        from ..core.map_db import load_map
        places = load_map(args.map).places
    pngs = plot_eval(matched, out, places)
    report["plots"] = [str(p) for p in pngs]
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(_fmt_line("overall", report["overall"], args.radius))
    for c, s in report.get("by_condition", {}).items():
        print(_fmt_line(c, s, args.radius))
    print(f"wrote {out / 'metrics.json'} and {', '.join(p.name for p in pngs)}")
    return 0
