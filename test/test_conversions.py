import math

import numpy as np
import pytest

pytest.importorskip("geometry_msgs")
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from visloc_ros.core.errors import ImageError  # noqa: E402
from visloc_ros.core.geo import Datum, geodetic_to_enu  # noqa: E402
from visloc_ros.core.localizer import Fix  # noqa: E402
from visloc_ros.core.pose import UNOBSERVED_VAR  # noqa: E402
from visloc_ros.nodes import conversions as conv  # noqa: E402
from visloc_ros.nodes.latest_slot import LatestSlot  # noqa: E402


def make_fix(yaw=math.pi / 2, xyz=(10.0, 5.0, 0.0)):
    cov6 = np.diag([2.0, 3.0, 0.5, UNOBSERVED_VAR, UNOBSERVED_VAR, 0.1 if math.isfinite(yaw) else UNOBSERVED_VAR])
    return Fix(True, "LOCALIZED", np.array(xyz), yaw, cov6[:2, :2].copy(), cov6, 0.9, 1.0, 3, 1,
               np.array([3]), np.array([0.9]))


def test_image_message_roundtrip_and_errors():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    m = conv.rgb_to_image(rgb, Header(frame_id="cam"))
    assert m.encoding == "rgb8" and m.step == 9
    assert np.array_equal(conv.image_to_rgb(m), rgb)
    bad = Image(height=2, width=3, encoding="rgb9", step=9, data=rgb.tobytes())
    with pytest.raises(ImageError):
        conv.image_to_rgb(bad)


def test_extrinsic_gives_base_link_pose():
    # camera 1 m ahead of base_link, robot facing +y (yaw 90 deg): base_link is 1 m behind the camera along -y
    t = conv.extrinsic_matrix(1.0, 0.0, 0.5, 0.0, 0.0, 0.0)
    pos, q, cov = conv.base_pose(make_fix(), t)
    assert np.allclose(pos, [10.0, 4.0, -0.5], atol=1e-9)
    assert np.allclose(q, [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)], atol=1e-9)  # x, y, z, w
    # camera yawed 90 deg left on the robot: the robot faces 0 when the camera faces 90
    t2 = conv.extrinsic_matrix(0.0, 0.0, 0.0, 0.0, 0.0, math.pi / 2)
    _, q2, _ = conv.base_pose(make_fix(), t2)
    assert np.allclose(q2, [0, 0, 0, 1], atol=1e-9)


def test_unknown_heading_widens_covariance_instead_of_guessing():
    t = conv.extrinsic_matrix(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    pos, q, cov = conv.base_pose(make_fix(yaw=float("nan")), t)
    assert np.allclose(pos[:2], [10.0, 5.0]) and np.allclose(q, [0, 0, 0, 1])
    assert cov[0, 0] == pytest.approx(3.0) and cov[1, 1] == pytest.approx(4.0) and cov[5, 5] == UNOBSERVED_VAR


def test_pose_and_navsat_messages():
    h = Header(frame_id="map")
    m = conv.pose_msg(make_fix(), h, np.eye(4))
    assert m.header.frame_id == "map" and len(m.pose.covariance) == 36 and m.pose.covariance[0] == 2.0
    d = Datum(31.26, 34.80, 280.0)
    n = conv.navsat_msg(make_fix(), h, np.eye(4), d)
    enu = geodetic_to_enu(n.latitude, n.longitude, n.altitude, d)
    assert np.allclose(enu, [10.0, 5.0, 0.0], atol=1e-3)
    assert n.position_covariance[0] == 2.0 and n.position_covariance_type == 3


def test_places_markers_colour_by_cell():
    xyz = np.array([[0, 0, 0], [1, 0, 0], [5, 5, 0]], float)
    arr = conv.places_markers(xyz, np.array([0, 0, 7]), Header(frame_id="map"), 0.5)
    pts = arr.markers[0]
    assert len(pts.points) == 3 and pts.colors[0] == pts.colors[1] and pts.colors[0] != pts.colors[2]
    assert [m.text for m in arr.markers[1:]] == ["cell 0", "cell 7"]


def test_latest_slot_keeps_only_the_newest():
    s = LatestSlot()
    for i in range(5):
        s.put(i)
    assert s.get(0.01) == 4 and s.dropped == 4
    assert s.get(0.01) is None
    s.close()
    assert s.get(5.0) is None  # closed: returns at once
