"""Native TensorRT backend (``tensorrt`` + ``pycuda``), written to NVIDIA's TensorRT 10 Python API.

An engine is built from the ONNX model on the target GPU (explicit batch, one optimisation profile covering
the configured input sizes, FP16 when the GPU has fast FP16, a timing cache) and cached on disk under a key
made of the GPU name, compute capability, TensorRT version, precision, profile and the ONNX file's hash, so a
stale engine is never loaded. Page-locked host and device buffers are allocated once for the largest shape;
each call is copy-in, execute, copy-out on one CUDA stream.

Neither package installs on this project's build machines (no GPU): everything that needs them is imported
inside the functions that run there; the cache keying below is plain Python and tested everywhere.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from .errors import BackendError
from .model_files import Profile, sha256_file

log = logging.getLogger(__name__)


def engine_key(onnx_sha256: str, gpu_name: str, compute_capability: tuple[int, int], trt_version: str,
               precision: str, profile: Profile) -> str:
    """Everything that makes an engine valid; any change gives another key (another file)."""
    ident = {"onnx": onnx_sha256, "gpu": gpu_name, "cc": list(compute_capability), "trt": trt_version,
             "precision": precision, "profile": [list(profile.min), list(profile.opt), list(profile.max)]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("VISLOC_ENGINE_CACHE", Path.home() / ".cache" / "visloc_ros" / "engines"))


def engine_path(cache_dir: Path, onnx: Path, key: str) -> Path:
    return Path(cache_dir) / f"{onnx.stem}-{key[:20]}.engine"


def tensorrt_missing() -> str | None:
    """None when TensorRT can run here, else one line naming what is missing."""
    missing = []
    for mod, name in (("tensorrt", "tensorrt"), ("pycuda.driver", "pycuda")):
        try:
            __import__(mod)
        except Exception:
            missing.append(name)
    if missing:
        return (f"the Python package(s) {', '.join(missing)} (pip install '.[tensorrt]' on a machine with an NVIDIA "
                f"GPU and CUDA)")
    import pycuda.driver as cuda

    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "an NVIDIA GPU (CUDA reports no device)"
    except Exception as e:
        return f"a working CUDA driver ({e})"
    return None


class TensorRTBackend:
    """One engine, one execution context, one stream; ``run(x)`` like every backend."""

    def __init__(self, onnx: str | Path, profile: Profile, fp16: bool = True, cache_dir: str | Path | None = None,
                 device: int = 0):
        why = tensorrt_missing()
        if why:
            raise BackendError(f"backend 'tensorrt' needs {why}; not found here")
        import pycuda.driver as cuda
        import tensorrt as trt

        self._cuda, self._trt = cuda, trt
        self.onnx = Path(onnx)
        if not self.onnx.is_file():
            raise BackendError(f"model file {self.onnx} does not exist")
        dev = cuda.Device(device)
        self._ctx = dev.make_context()
        try:
            self.gpu_name, cc = dev.name(), dev.compute_capability()
            self.logger = trt.Logger(trt.Logger.WARNING)
            # fast FP16 from compute capability 5.3 (platform_has_fast_fp16 is deprecated in later TensorRT 10)
            precision = "fp16" if fp16 and tuple(cc) >= (5, 3) else "fp32"
            key = engine_key(sha256_file(self.onnx), self.gpu_name, tuple(cc), trt.__version__, precision, profile)
            self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
            self.engine_file = engine_path(self.cache_dir, self.onnx, key)
            if not self.engine_file.is_file():
                build_engine(self.onnx, self.engine_file, profile, precision == "fp16", self.logger,
                             meta={"key": key, "gpu": self.gpu_name, "cc": list(cc), "trt": trt.__version__})
            runtime = trt.Runtime(self.logger)
            self.engine = runtime.deserialize_cuda_engine(self.engine_file.read_bytes())
            if self.engine is None:
                raise BackendError(f"TensorRT could not load the cached engine {self.engine_file}; delete it to rebuild")
            self.context = self.engine.create_execution_context()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            if len(self.inputs) != 1 or len(self.outputs) != 1:
                raise BackendError(f"{self.onnx}: expected one input and one output, got {names}")
            self.stream = cuda.Stream()
            # buffers for the largest shape, allocated once
            self.context.set_input_shape(self.inputs[0], profile.max)
            self._host, self._dev = {}, {}
            for n, shape in ((self.inputs[0], profile.max), (self.outputs[0], tuple(self.context.get_tensor_shape(self.outputs[0])))):
                dt = trt.nptype(self.engine.get_tensor_dtype(n))
                self._host[n] = cuda.pagelocked_empty(int(np.prod(shape)), dt)
                self._dev[n] = cuda.mem_alloc(self._host[n].nbytes)
                self.context.set_tensor_address(n, int(self._dev[n]))
            self.profile = profile
            self.name = f"tensorrt:{precision}"
        finally:
            self._ctx.pop()

    def run(self, x: np.ndarray) -> np.ndarray:
        cuda = self._cuda
        i, o = self.inputs[0], self.outputs[0]
        if x.ndim != len(self.profile.max) or any(s > m for s, m in zip(x.shape, self.profile.max)):
            raise BackendError(f"input shape {x.shape} is outside the engine's profile (max {self.profile.max})")
        self._ctx.push()
        try:
            self.context.set_input_shape(i, x.shape)
            out_shape = tuple(self.context.get_tensor_shape(o))
            hin = self._host[i][: x.size].reshape(x.shape)
            np.copyto(hin, x, casting="same_kind")
            cuda.memcpy_htod_async(self._dev[i], hin, self.stream)
            if not self.context.execute_async_v3(stream_handle=self.stream.handle):
                raise BackendError("TensorRT execution failed")
            n_out = int(np.prod(out_shape))
            hout = self._host[o][:n_out]
            cuda.memcpy_dtoh_async(hout, self._dev[o], self.stream)
            self.stream.synchronize()
            return hout.reshape(out_shape).astype(np.float32, copy=True)
        finally:
            self._ctx.pop()

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.push()
        try:
            for d in self._dev.values():
                d.free()
            self._dev = {}
            self.context = self.engine = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None


def build_engine(onnx: Path, out: Path, profile: Profile, fp16: bool, logger=None, meta: dict | None = None) -> Path:
    """Build and serialise an engine (and keep a timing cache beside it); logs the time it took."""
    import tensorrt as trt

    logger = logger or trt.Logger(trt.Logger.WARNING)
    t0 = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx).read_bytes()):
        errs = "; ".join(str(parser.get_error(k)) for k in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    p = builder.create_optimization_profile()
    p.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(p)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache_file = out.parent / "timing.cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine for {onnx}")
    tmp = out.with_suffix(".engine.tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, out)
    cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    (out.with_suffix(".json")).write_text(json.dumps(dict(meta or {}, onnx=str(onnx), fp16=fp16,
                                                          build_s=round(time.perf_counter() - t0, 1)), indent=2))
    log.info("built TensorRT engine %s in %.1f s", out.name, time.perf_counter() - t0)
    return out
