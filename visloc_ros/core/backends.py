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


def one_blas_thread() -> None:
    """Limit numpy's BLAS (OpenBLAS) to one thread in this process, for per-frame localization.

    The numpy work per frame is matrix-vector sized (a query against every place); OpenBLAS's worker threads
    busy-wait after each call and take a core from ONNX Runtime's next CNN run: on 2 cores the CNN took
    p50 18-24 ms in the pipeline instead of 13 ms (``benchmarks/bench_pipeline.py``). Map building, which does
    large products, does not call this."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


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


def ort_gpu_providers() -> list[str]:
    """ONNX Runtime's GPU execution providers present here (onnxruntime-gpu), best first."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = set(ort.get_available_providers())
    return [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]


def plan(kind: str, trt_missing: str | None, gpu_providers: list[str], has_profile: bool) -> list[tuple[str, str]]:
    """Backends to try, in order, each with why: (``tensorrt`` | ``onnxruntime-gpu`` | ``onnxruntime-cpu``, reason).

    ``auto``: native TensorRT, then ONNX Runtime's GPU providers, then ONNX Runtime on the CPU.
    """
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend '{kind}' (choose from {', '.join(BACKENDS)})")
    if kind == "tensorrt":
        if trt_missing:
            raise BackendError(f"backend 'tensorrt' needs {trt_missing}; not found here")
        if not has_profile:
            raise BackendError("backend 'tensorrt' needs the model's input sizes (an optimisation profile)")
        return [("tensorrt", "requested")]
    steps = []
    if kind == "auto":
        if trt_missing:
            steps.append(("skip-tensorrt", f"TensorRT unavailable: needs {trt_missing}"))
        elif not has_profile:
            steps.append(("skip-tensorrt", "TensorRT skipped: no input profile for this model"))
        else:
            steps.append(("tensorrt", "TensorRT and a GPU are present"))
    if gpu_providers:
        steps.append(("onnxruntime-gpu", f"ONNX Runtime GPU providers {gpu_providers}"))
    elif kind == "auto":
        steps.append(("skip-onnxruntime-gpu", "no ONNX Runtime GPU provider (onnxruntime-gpu not installed)"))
    steps.append(("onnxruntime-cpu", "ONNX Runtime on the CPU"))
    return steps


def create_backend(model: str | Path, kind: str = "auto", threads: int = 2, profile=None) -> Backend:
    """Load ``model`` on the backend ``kind``, logging the choice and every fallback with its reason.

    ``profile`` (:class:`~visloc_ros.core.model_files.Profile`) gives TensorRT the input sizes to build for.
    """
    from .trt_backend import TensorRTBackend, tensorrt_missing

    trt_why = tensorrt_missing() if kind in ("auto", "tensorrt") else "not requested"
    steps = plan(kind, trt_why, ort_gpu_providers(), profile is not None)
    notes = []
    for step, why in steps:
        if step.startswith("skip-"):
            notes.append(why)
            continue
        try:
            if step == "tensorrt":
                b = TensorRTBackend(model, profile)
            elif step == "onnxruntime-gpu":
                b = OnnxRuntimeBackend(model, threads, ort_gpu_providers() + ["CPUExecutionProvider"])
            else:
                b = OnnxRuntimeBackend(model, threads)
        except BackendError as e:
            if kind == "auto" and step != steps[-1][0]:
                notes.append(f"{step} failed: {e}")
                continue
            raise
        log.info("backend %s: %s for %s (%s)%s", kind, b.name, Path(model).name, why,
                 "; " + "; ".join(notes) if notes else "")
        return b
    raise BackendError(f"no backend could load {model}")
