import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from visloc_ros.core.backends import OnnxRuntimeBackend, create_backend
from visloc_ros.core.errors import BackendError


@pytest.fixture
def double_model(tmp_path):
    """A real ONNX graph: y = 2 * x."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], [two])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    p = tmp_path / "double.onnx"
    onnx.save(m, p)
    return p


def test_onnxruntime_runs_a_model(double_model):
    b = OnnxRuntimeBackend(double_model, threads=1)
    out = b.run(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert np.array_equal(out, 2 * np.arange(6, dtype=np.float32).reshape(2, 3))
    assert b.name == "onnxruntime:cpu"


def test_auto_picks_cpu_here_and_says_so(double_model, caplog):
    with caplog.at_level(logging.INFO):
        b = create_backend(double_model, "auto", threads=1)
    assert b.name.startswith("onnxruntime")
    assert "backend auto" in caplog.text


def test_errors_are_one_clear_line(double_model, tmp_path):
    with pytest.raises(BackendError, match="unknown backend 'cuda'"):
        create_backend(double_model, "cuda")
    with pytest.raises(BackendError, match="does not exist"):
        create_backend(tmp_path / "nope.onnx", "onnxruntime")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(BackendError, match="cannot load"):
        create_backend(broken, "onnxruntime")


def test_tensorrt_names_what_is_missing(double_model):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError) as e:
        create_backend(double_model, "tensorrt")
    msg = str(e.value)
    assert "tensorrt" in msg and "\n" not in msg
