"""Backend selection, engine cache keying and error lines run everywhere; engine build/run and parity with
ONNX Runtime run only where `tensorrt` imports and a GPU is present (skipped elsewhere)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import run_visloc
from visloc_ros.core.backends import create_backend, plan
from visloc_ros.core.errors import BackendError
from visloc_ros.core.model_files import Profile, cnn_profile, encoder_profile
from visloc_ros.core.trt_backend import engine_key, engine_path, tensorrt_missing

TRT_WHY = tensorrt_missing()
needs_trt = pytest.mark.skipif(TRT_WHY is not None, reason=f"TensorRT not usable here: {TRT_WHY}")


def test_auto_order_and_reasons():
    steps = plan("auto", None, ["CUDAExecutionProvider"], True)
    assert [s for s, _ in steps] == ["tensorrt", "onnxruntime-gpu", "onnxruntime-cpu"]
    steps = plan("auto", "the Python package(s) tensorrt", [], True)
    assert [s for s, _ in steps] == ["skip-tensorrt", "skip-onnxruntime-gpu", "onnxruntime-cpu"]
    assert "tensorrt" in steps[0][1]
    assert [s for s, _ in plan("auto", None, [], False)][0] == "skip-tensorrt"
    assert [s for s, _ in plan("onnxruntime", None, [], True)] == ["onnxruntime-cpu"]
    assert [s for s, _ in plan("tensorrt", None, [], True)] == ["tensorrt"]


def test_explicit_tensorrt_fails_with_one_line():
    with pytest.raises(BackendError, match="backend 'tensorrt' needs pycuda"):
        plan("tensorrt", "pycuda", [], True)
    with pytest.raises(BackendError, match="input sizes"):
        plan("tensorrt", None, [], False)
    with pytest.raises(BackendError, match="unknown backend"):
        plan("cuda", None, [], True)


def test_engine_key_changes_with_everything_that_invalidates_an_engine(tmp_path):
    base = dict(onnx_sha256="a" * 64, gpu_name="NVIDIA Orin", compute_capability=(8, 7), trt_version="10.3.0",
                precision="fp16", profile=cnn_profile(320, 240))
    k = engine_key(**base)
    assert k == engine_key(**base)  # deterministic
    for field, other in (("onnx_sha256", "b" * 64), ("gpu_name", "NVIDIA RTX 4090"), ("compute_capability", (8, 9)),
                         ("trt_version", "10.4.0"), ("precision", "fp32"), ("profile", cnn_profile(640, 480))):
        assert engine_key(**dict(base, **{field: other})) != k, field
    p = engine_path(tmp_path, tmp_path / "efficientnet_lite0_gem.onnx", k)
    assert p.parent == tmp_path and p.name.startswith("efficientnet_lite0_gem-") and p.suffix == ".engine"


def test_profiles_cover_both_orientations_and_batches():
    p = cnn_profile(320, 240, max_batch=8)
    assert p.min == (1, 240, 240, 3) and p.opt == (1, 240, 320, 3) and p.max == (8, 320, 320, 3)
    assert encoder_profile(1280).max == (64, 1280) and isinstance(p, Profile)


@pytest.mark.skipif(TRT_WHY is None, reason="TensorRT is usable here")
def test_missing_tensorrt_names_the_piece_everywhere(tmp_path, xy_map, synth_xy):
    with pytest.raises(BackendError) as e:
        create_backend(tmp_path / "m.onnx", "tensorrt", 1, cnn_profile(320, 240))
    assert "tensorrt" in str(e.value) and "\n" not in str(e.value)
    r = run_visloc("models", "build-engine", "--onnx", str(xy_map / "encoder.onnx"))
    assert r.returncode == 1 and r.stderr.strip().startswith("visloc models: error: building a TensorRT engine needs")
    r = run_visloc("build-map", "--images-csv", str(synth_xy[0]), "--out", str(tmp_path / "m"), "--backend", "tensorrt")
    assert r.returncode == 1 and "backend 'tensorrt' needs" in r.stderr and not (tmp_path / "m").exists()


@pytest.mark.skipif(TRT_WHY is None, reason="TensorRT is usable here")
def test_node_configure_fails_with_that_line(xy_map):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.lifecycle import TransitionCallbackReturn

    from visloc_ros.nodes.localizer_node import LocalizerNode

    rclpy.init()
    try:
        n = LocalizerNode(parameter_overrides=[rclpy.parameter.Parameter("map_path", value=str(xy_map)),
                                               rclpy.parameter.Parameter("backend", value="tensorrt"),
                                               rclpy.parameter.Parameter("autostart", value=False)])
        assert n.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "backend 'tensorrt' needs" in n._configure_error
        n.destroy_node()
    finally:
        rclpy.shutdown()


@needs_trt
def test_engine_builds_caches_and_matches_onnxruntime(tmp_path, xy_map, synth_xy):
    from visloc_ros.core.descriptor import CnnDescriptor, default_cnn_path
    from visloc_ros.core.preprocess import load_image, resize
    from visloc_ros.core.trt_backend import TensorRTBackend

    imgs = np.stack([resize(load_image(p)) for p in sorted((synth_xy[1].parent / "query").glob("*.jpg"))[:4]])
    trt_b = TensorRTBackend(default_cnn_path(), cnn_profile(320, 240), fp16=True, cache_dir=tmp_path)
    assert trt_b.engine_file.is_file()
    again = TensorRTBackend(default_cnn_path(), cnn_profile(320, 240), fp16=True, cache_dir=tmp_path)
    assert again.engine_file == trt_b.engine_file  # loaded from the cache, not rebuilt
    ref = CnnDescriptor(backend="onnxruntime").batch(imgs)
    got = trt_b.run(imgs)
    assert np.max(np.abs(got - ref)) < 2e-2  # FP16 tolerance on unit vectors
    assert np.all(np.argmax(got @ ref.T, axis=1) == np.arange(len(imgs)))
    trt_b.close()
    again.close()


@needs_trt
def test_same_top1_place_on_a_small_map(xy_map, synth_xy):
    from visloc_ros.core.config import LocalizerConfig
    from visloc_ros.core.dataset import read_csv
    from visloc_ros.core.localizer import Localizer

    q = read_csv(synth_xy[1])
    cpu = Localizer(xy_map, LocalizerConfig(backend="onnxruntime"))
    gpu = Localizer(xy_map, LocalizerConfig(backend="tensorrt"))
    assert gpu.backend_name.startswith("tensorrt")
    same = [cpu.localize(q.path(i)).candidate_ids[0] == gpu.localize(q.path(i)).candidate_ids[0] for i in range(len(q))]
    assert np.mean(same) >= 0.9
