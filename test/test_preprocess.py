import cv2
import numpy as np
import pytest

from visloc_ros.core.errors import ImageError
from visloc_ros.core.preprocess import (SUPPORTED_ENCODINGS, LowLight, decode_compressed, decode_raw,
                                        illumination_condition, load_image, resize)


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_NEAREST)
    return img


def test_rgb_bgr_rgba_bgra_roundtrip(rgb):
    h, w = rgb.shape[:2]
    assert np.array_equal(decode_raw(rgb.tobytes(), w, h, "rgb8"), rgb)
    assert np.array_equal(decode_raw(rgb[..., ::-1].tobytes(), w, h, "bgr8"), rgb)
    rgba = np.dstack([rgb, np.full((h, w), 7, np.uint8)])
    assert np.array_equal(decode_raw(rgba.tobytes(), w, h, "rgba8"), rgb)
    bgra = np.dstack([rgb[..., ::-1], np.full((h, w), 7, np.uint8)])
    assert np.array_equal(decode_raw(bgra.tobytes(), w, h, "bgra8"), rgb)


def test_row_padding_is_respected(rgb):
    h, w = rgb.shape[:2]
    step = w * 3 + 16
    buf = np.zeros((h, step), np.uint8)
    buf[:, : w * 3] = rgb.reshape(h, -1)
    assert np.array_equal(decode_raw(buf.tobytes(), w, h, "rgb8", step=step), rgb)


def test_mono8_and_mono16_both_endians():
    g = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (4, 1))
    out = decode_raw(g.tobytes(), g.shape[1], 4, "mono8")
    assert out.shape == (4, g.shape[1], 3) and np.array_equal(out[..., 0], g) and np.array_equal(out[..., 2], g)
    g16 = g.astype(np.uint16) * 16  # a 12-bit sensor
    le = decode_raw(g16.astype("<u2").tobytes(), g.shape[1], 4, "mono16")
    be = decode_raw(g16.astype(">u2").tobytes(), g.shape[1], 4, "mono16", is_bigendian=True)
    assert np.array_equal(le, be)
    assert np.all(np.diff(le[0, :, 0].astype(int)) >= 0) and le.max() >= 250  # order kept, range stretched


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_give_the_right_colour(pattern):
    h, w = 32, 32
    mosaic = np.zeros((h, w), np.uint8)
    layout = {"r": None, "g": None, "b": None}
    colour = {"r": 220, "g": 60, "b": 20}  # an orange scene
    for k, ch in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = colour[ch]
    out = decode_raw(mosaic.tobytes(), w, h, f"bayer_{pattern}8")
    mean = out[4:-4, 4:-4].reshape(-1, 3).mean(0)
    assert mean[0] > 200 and 40 < mean[1] < 80 and mean[2] < 40, (pattern, mean)
    del layout


def test_yuv422_uyvy_and_yuyv(rgb):
    h, w = rgb.shape[:2]
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.int32)
    y = yuv[..., 0]
    u = ((yuv[:, 0::2, 1] + yuv[:, 1::2, 1]) // 2)
    v = ((yuv[:, 0::2, 2] + yuv[:, 1::2, 2]) // 2)
    uyvy = np.stack([u, y[:, 0::2], v, y[:, 1::2]], -1).reshape(h, w * 2).astype(np.uint8)
    yuyv = np.stack([y[:, 0::2], u, y[:, 1::2], v], -1).reshape(h, w * 2).astype(np.uint8)
    for data, enc in ((uyvy, "yuv422"), (yuyv, "yuv422_yuy2")):
        out = decode_raw(data.tobytes(), w, h, enc)
        assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 25, enc


def test_bad_buffers_raise_image_error(rgb):
    h, w = rgb.shape[:2]
    with pytest.raises(ImageError, match="unknown image encoding 'rgb9'"):
        decode_raw(rgb.tobytes(), w, h, "rgb9")
    with pytest.raises(ImageError) as e:  # the sender's text is quoted, so the reason stays one line
        decode_raw(rgb.tobytes(), w, h, "rgb\n8")
    assert "\n" not in str(e.value) and "'rgb\\n8'" in str(e.value)
    with pytest.raises(ImageError, match="zero size"):
        decode_raw(b"", 0, 0, "rgb8")
    with pytest.raises(ImageError, match="too small"):
        decode_raw(rgb.tobytes()[:-10], w, h, "rgb8")
    with pytest.raises(ImageError, match="step"):
        decode_raw(rgb.tobytes(), w, h, "rgb8", step=w)
    assert "bayer_rggb8" in SUPPORTED_ENCODINGS and "yuv422" in SUPPORTED_ENCODINGS


def test_compressed_and_files(rgb, tmp_path):
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.array_equal(decode_compressed(png.tobytes()), rgb)
    with pytest.raises(ImageError, match="corrupt"):
        decode_compressed(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ImageError, match="empty"):
        decode_compressed(b"")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError, match="bad.jpg"):
        load_image(bad)
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "missing.jpg")


def test_resize_keeps_orientation():
    land = np.zeros((480, 640, 3), np.uint8)
    port = np.zeros((256, 192, 3), np.uint8)
    assert resize(land, 320, 240).shape == (240, 320, 3)
    assert resize(port, 320, 240).shape == (320, 240, 3)


def test_low_light_brightens_dark_frames_and_condition():
    rng = np.random.default_rng(1)
    dark = (rng.random((120, 160, 3)) * 40).astype(np.uint8)
    assert illumination_condition(dark) == "night"
    out = LowLight()(dark)
    assert out.mean() > 2 * dark.mean()
    bright = np.full((120, 160, 3), 180, np.uint8)
    assert illumination_condition(bright) == "day"
