import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from visloc_ros.core.dataset import read_csv, read_image_folder
from visloc_ros.core.errors import DatasetError


def write(p, text):
    p.write_text(text)
    return p


def test_xy_with_quaternion_and_extras(tmp_path):
    p = write(tmp_path / "a.csv", "image,x,y,z,qx,qy,qz,qw,stamp_ns,condition,extra\n"
                                  "a.jpg,1,2,3,0,0,0,2,100,day,zz\nb.jpg,4,5,6,0,0,1,0,200,night,zz\n")
    ds = read_csv(p)
    assert ds.images == ["a.jpg", "b.jpg"] and not ds.georeferenced
    assert np.allclose(ds.xyz, [[1, 2, 3], [4, 5, 6]])
    assert np.allclose(ds.quat[0], [0, 0, 0, 1])  # normalised
    assert list(ds.stamp_ns) == [100, 200] and ds.condition == ["day", "night"]
    assert ds.path(0) == tmp_path / "a.jpg"


def test_latlon_becomes_enu_and_yaw_column(tmp_path):
    p = write(tmp_path / "g.csv", "image,lat,lon,yaw\na.jpg,31.0,34.0,0\nb.jpg,31.001,34.0,1.5707963\n")
    ds = read_csv(p)
    assert ds.georeferenced
    assert abs(np.linalg.norm(ds.xyz[1] - ds.xyz[0]) - 110.9) < 0.5
    assert np.allclose(ds.quat[1], [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)


@pytest.mark.parametrize("text,msg", [
    ("", "empty"),
    ("image,x,y\n", "no rows"),
    ("image,foo,bar\na.jpg,1,2\n", "no position columns"),
    ("file,x,y\na.jpg,1,2\n", "no 'image' column"),
    ("image,x,y\na.jpg,one,2\n", r"a.csv:2: column 'x' is not a number"),
    ("image,lat,lon\na.jpg,340,31\n", "out of range"),
    ("image,x,y,qx,qy,qz,qw\na.jpg,1,2,0,0,0,0\n", "zero norm"),
])
def test_bad_csv_one_line_errors(tmp_path, text, msg):
    with pytest.raises(DatasetError, match=msg) as e:
        read_csv(write(tmp_path / "a.csv", text))
    assert "\n" not in str(e.value)


def test_missing_csv(tmp_path):
    with pytest.raises(DatasetError, match="cannot read CSV"):
        read_csv(tmp_path / "none.csv")


def _jpeg_with_gps(path, lat, lon):
    img = Image.new("RGB", (32, 24), (120, 30, 30))
    exif = Image.Exif()
    gps = {1: "N" if lat >= 0 else "S", 2: (abs(int(lat)), int(abs(lat) % 1 * 60), (abs(lat) * 3600) % 60),
           3: "E" if lon >= 0 else "W", 4: (abs(int(lon)), int(abs(lon) % 1 * 60), (abs(lon) * 3600) % 60)}
    exif[0x8825] = gps
    img.save(path, exif=exif)


def test_image_folder_with_exif_gps(tmp_path):
    _jpeg_with_gps(tmp_path / "a.jpg", 31.2620, 34.8040)
    _jpeg_with_gps(tmp_path / "b.jpg", -31.2630, -34.8050)
    Image.new("RGB", (8, 8)).save(tmp_path / "nogps.jpg")
    ds, skipped = read_image_folder(tmp_path)
    assert ds.images == ["a.jpg", "b.jpg"] and skipped == ["nogps.jpg"]
    assert np.allclose(ds.latlonalt[0, :2], [31.2620, 34.8040], atol=1e-5)
    assert np.allclose(ds.latlonalt[1, :2], [-31.2630, -34.8050], atol=1e-5)
    with pytest.raises(DatasetError, match="does not exist"):
        read_image_folder(tmp_path / "nope")


@pytest.mark.parametrize("gps", [
    {1: "N", 2: (31.0, 15.0), 3: "E", 4: (34.0, 48.0, 0.0)},          # two numbers, not three
    {1: "N", 2: (IFDRational(31, 0), IFDRational(15, 1), IFDRational(0, 0)), 3: "E", 4: (34.0, 48.0, 0.0)},  # x/0
    {1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (34.0, 48.0, 0.0)},      # latitude out of range
])
def test_malformed_exif_gps_is_skipped_not_raised(tmp_path, gps):  # found by benchmarks/bench_reliability.py
    img = Image.new("RGB", (8, 8))
    exif = Image.Exif()
    exif[0x8825] = gps
    img.save(tmp_path / "bad.jpg", exif=exif)
    _jpeg_with_gps(tmp_path / "good.jpg", 31.2620, 34.8040)
    ds, skipped = read_image_folder(tmp_path)
    assert ds.images == ["good.jpg"] and skipped == ["bad.jpg"]
