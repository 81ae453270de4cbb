"""Inference backends behind one small interface: ``run(array) -> array``.

ONNX Runtime is the tested default (CPU everywhere; CUDA / TensorRT execution providers when
``onnxruntime-gpu`` provides them). ``backend='auto'`` picks the fastest that works and says which.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import BackendError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt")


class Backend(Protocol):
    """A loaded model: one input array in, one output array out."""

    name: str

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class OnnxRuntimeBackend:
    """ONNX Runtime session with a fixed thread count; providers in order of preference."""

    def __init__(self, model: str | Path, threads: int = 2, providers: list[str] | None = None):
        import onnxruntime as ort

        p = Path(model)
        if not p.is_file():
            raise BackendError(f"model file {p} does not exist")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # no busy-waiting between runs: the CNN and the encoder sessions share the cores, and spinning
        # threads of one slow the other (CNN p50 17-21 ms instead of 11 ms on 2 cores: bench_pipeline.py)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(p), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own (Fail, InvalidGraph, NoSuchFile...) types
            raise BackendError(f"ONNX Runtime cannot load {p}: {str(e).splitlines()[0]}") from None
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        used = self._session.get_providers()
        self.name = "onnxruntime:" + used[0].replace("ExecutionProvider", "").lower()
        self.model_path = p

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: x})[0]

    def close(self) -> None:
        self._session = None


def _ort_gpu_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = set(ort.get_available_providers())
    return [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]


def create_backend(model: str | Path, kind: str = "auto", threads: int = 2) -> Backend:
    """Load ``model`` on the backend ``kind``; ``auto`` tries the GPU paths first, then ONNX Runtime CPU."""
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend '{kind}' (choose from {', '.join(BACKENDS)})")
    if kind == "tensorrt":
        _require_tensorrt()
        raise BackendError("backend 'tensorrt': the native TensorRT engine path is not part of this build yet; "
                           "use backend 'auto' (ONNX Runtime TensorRT/CUDA execution providers when present)")
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(model, threads)
    gpu = _ort_gpu_providers()
    if gpu:
        try:
            b = OnnxRuntimeBackend(model, threads, gpu + ["CPUExecutionProvider"])
            log.info("backend auto: %s for %s (GPU execution providers %s)", b.name, Path(model).name, gpu)
            return b
        except BackendError as e:
            log.warning("backend auto: GPU providers failed (%s); falling back to CPU", e)
    b = OnnxRuntimeBackend(model, threads)
    log.info("backend auto: %s for %s (no TensorRT or GPU execution provider found)", b.name, Path(model).name)
    return b


def _require_tensorrt() -> None:
    """Fail with one line naming what is missing for the TensorRT backend."""
    missing = []
    for mod, pip_name in (("tensorrt", "tensorrt"), ("pycuda.driver", "pycuda")):
        try:
            __import__(mod)
        except Exception:
            missing.append(pip_name)
    if missing:
        raise BackendError(f"backend 'tensorrt' needs the Python package(s) {', '.join(missing)} and an NVIDIA GPU "
                           f"(pip install '.[tensorrt]' on a CUDA machine); not found here")
