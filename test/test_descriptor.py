import numpy as np
import onnx
import pytest

from visloc_ros.core.descriptor import CNN_DIM, CNN_FILE, CnnDescriptor, default_cnn_path, sha256_file
from visloc_ros.core.synthetic import draw_scene, view


@pytest.fixture(scope="module")
def cnn():
    return CnnDescriptor(backend="onnxruntime", threads=2)


def test_model_is_exported_opset17_with_checksum():
    p = default_cnn_path()
    assert p.name == CNN_FILE
    m = onnx.load(str(p), load_external_data=False)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 17
    rec = p.with_name(CNN_FILE + ".sha256").read_text().split()[0]
    assert rec == sha256_file(p)


def test_descriptor_shape_norm_and_dynamic_size(cnn):
    for h, w in ((240, 320), (320, 240), (120, 160)):
        d = cnn(draw_scene(3, w, h))
        assert d.shape == (CNN_DIM,) and d.dtype == np.float32
        assert abs(np.linalg.norm(d) - 1) < 1e-4


def test_same_place_is_closer_than_another_place(cnn):
    rng = np.random.default_rng(0)
    scenes = cnn.batch(np.stack([draw_scene(s) for s in range(10, 16)]))
    for k in range(6):  # a revisit (shifted, noisy) is closest to its own scene among six
        q = cnn(view(draw_scene(10 + k), rng, night=False))
        assert int(np.argmax(scenes @ q)) == k
    assert np.allclose(cnn(draw_scene(10)), scenes[0], atol=1e-5)  # batch == single
