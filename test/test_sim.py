"""The generated world: trajectories, sensor noise models, MuJoCo rendering, recording, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from visloc_ros.core.errors import VislocError
from visloc_ros.sim.sensors import ImuSpec, Trajectory, camera_info, drive, simulate_imu
from visloc_ros.tools.odometry import OdomSpec, simulate_odometry
from visloc_ros.sim.worlds import make_world

LINE = np.array([[0.0, 0.0], [60.0, 0.0]])


def test_drive_follows_the_centreline_at_the_requested_speed():
    tr = drive(LINE, False, seed=3, height=1.3, start=5.0, distance=40.0, speed=1.5, lateral=-1.0, weave=0.2)
    assert tr.xyz[0, 0] == pytest.approx(5.0, abs=0.05) and tr.xyz[-1, 0] == pytest.approx(45.0, abs=0.05)
    assert np.all(np.abs(tr.xyz[:, 1] + 1.0) < 0.2 * 3.5)             # lateral offset stays near -1 m
    v = np.linalg.norm(np.diff(tr.xyz[:, :2], axis=0), axis=1) * tr.rate_hz
    assert np.mean(v) == pytest.approx(1.5, rel=0.15)
    heading = np.arctan2(np.diff(tr.xyz[:, 1]), np.diff(tr.xyz[:, 0]))
    assert np.abs(heading - tr.rpy[:-1, 2]).max() < 0.05                # the robot faces where it goes


def test_loop_drive_wraps_around_a_closed_centreline():
    square = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 10.0], [0.0, 10.0]])
    tr = drive(square, True, seed=1, height=1.2, start=55.0, distance=20.0, weave=0.0)
    # a 60 m loop (a little shorter with rounded corners): 55 + 20 m ends about 15 m along the first edge
    assert 14.0 < tr.xyz[-1, 0] < 18.0 and abs(tr.xyz[-1, 1]) < 0.3


def test_imu_noise_and_bias_match_their_densities():
    n, rate = 40000, 200.0
    t = np.arange(n) / rate
    still = Trajectory(t, np.tile([0.0, 0.0, 1.0], (n, 1)), np.zeros((n, 3)), rate)
    spec = ImuSpec(gyro_bias0=0.01, accel_bias0=0.1)
    imu = simulate_imu(still, spec, seed=5)
    dt = 1.0 / rate
    # at rest the accelerometer reads +g up and the gyro nothing, plus bias and noise
    assert np.allclose(imu.accel_true, [0, 0, 9.81], atol=1e-6) and np.allclose(imu.gyro_true, 0, atol=1e-9)
    white_g = imu.gyro - imu.gyro_true - imu.gyro_bias
    white_a = imu.accel - imu.accel_true - imu.accel_bias
    assert white_g.std(0) == pytest.approx([spec.gyro_noise / np.sqrt(dt)] * 3, rel=0.03)
    assert white_a.std(0) == pytest.approx([spec.accel_noise / np.sqrt(dt)] * 3, rel=0.03)
    walk = np.diff(imu.gyro_bias, axis=0)
    assert walk.std(0) == pytest.approx([spec.gyro_bias_walk * np.sqrt(dt)] * 3, rel=0.03)
    assert np.abs(imu.gyro_bias[0]).max() < 5 * spec.gyro_bias0 and np.abs(imu.gyro_bias[0]).max() > 0


def test_imu_measures_turning_and_acceleration_in_the_body_frame():
    tr = drive(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]), False, seed=2, height=1.0, speed=1.0,
               weave=0.0, wobble_deg=0.0, corner_radius=2.0)
    w, f = tr.body_rates()
    yaw_rate = np.diff(np.unwrap(tr.rpy[:, 2])) * tr.rate_hz
    assert np.allclose(w[:-1, 2], yaw_rate, atol=1e-3)                 # a left turn is +z in the body frame
    assert w[:, 2].max() > 0.3
    assert np.median(f[:, 2]) == pytest.approx(9.81, abs=0.05)


def test_wheel_odometry_drifts_with_its_scale_error_and_yaw_bias():
    t = np.arange(0, 100, 0.02)
    xy = np.stack([t * 1.0, np.zeros_like(t)], 1)
    spec = OdomSpec(scale_error=0.02, speed_noise=0.0, yaw_rate_bias=0.004, yaw_rate_noise=0.0)
    od = simulate_odometry(t, xy, np.zeros_like(t), spec, seed=4)
    assert np.hypot(*np.diff(od.xy[[0, -1]], axis=0)[0]) == pytest.approx(100 * od.scale, rel=1e-3)
    assert od.yaw[-1] == pytest.approx(od.bias * t[-1], rel=1e-6)      # heading drifts by the bias
    noisy = simulate_odometry(t, xy, np.zeros_like(t), OdomSpec(), seed=4)
    assert (noisy.v - noisy.v_true * noisy.scale).std() == pytest.approx(OdomSpec().speed_noise, rel=0.05)
    assert (noisy.w - noisy.w_true - noisy.bias).std() == pytest.approx(OdomSpec().yaw_rate_noise, rel=0.05)


def test_camera_info_is_a_centred_pinhole():
    c = camera_info(320, 240, 90.0)
    assert c["K"][0] == pytest.approx(120.0) and c["K"][2] == 160 and c["K"][5] == 120


def test_unknown_world_and_condition_are_one_line_errors():
    from visloc_ros.sim.render import lighting

    with pytest.raises(VislocError, match="unknown world 'mine'"):
        make_world("mine")
    with pytest.raises(VislocError, match="unknown lighting condition 'dusk'"):
        lighting("dusk")


# ------------------------------------------------------------------ rendering (MuJoCo, OSMesa)

@pytest.fixture(scope="module")
def short_tunnel():
    return make_world("tunnel", seed=2, length=24.0)


def test_worlds_are_deterministic_from_the_seed(short_tunnel):
    again = make_world("tunnel", seed=2, length=24.0)
    assert again.xml == short_tunnel.xml and again.assets == short_tunnel.assets
    assert make_world("tunnel", seed=3, length=24.0).assets != short_tunnel.assets
    b = make_world("building", seed=0)
    assert b.closed and len(b.lamps) > 10 and "<geom" in b.xml


def test_the_wings_world_repeats_its_first_half():
    """Two look-alike wings: the second half of the loop is drawn like the first, but for one panel in three and
    the room numbers; the plain building draws every texture anew."""
    import hashlib

    w, b = make_world("wings", seed=0), make_world("building", seed=0)
    assert w.name == "wings" and np.array_equal(w.centreline, b.centreline)
    digests = [hashlib.sha256(v).hexdigest() for v in w.assets.values()]
    shared = len(digests) - len(set(digests))  # textures drawn again identically in the second wing
    assert shared > 0.3 * len(digests)
    assert len({hashlib.sha256(v).hexdigest() for v in b.assets.values()}) == len(b.assets)
    assert make_world("wings", seed=0).assets == w.assets


def test_rendering_lit_night_and_determinism(short_tunnel):
    from visloc_ros.sim.render import Camera

    pose = (np.array([8.0, -1.7, 1.3]), np.zeros(3))
    with Camera(short_tunnel, "lit", seed=1) as cam:
        lit = cam.render(*pose)
    with Camera(short_tunnel, "night", seed=1) as cam:
        night = cam.render(*pose)
    with Camera(short_tunnel, "night", seed=1) as cam:
        night2 = cam.render(*pose)
    assert lit.shape == (240, 320, 3) and lit.dtype == np.uint8
    assert np.array_equal(night, night2)                               # same seed, same frame
    # night: the headlight cone lights the road ahead, the ceiling stays dark
    assert night[:60].mean() < 0.6 * lit[:60].mean()
    assert night[150:].mean() > night[:60].mean()
    assert np.std(lit.astype(float)) > 20                               # textured, not a flat render


def test_record_writes_bag_and_csv_deterministically(tmp_path, short_tunnel):
    from visloc_ros.core.dataset import read_csv
    from visloc_ros.sim.record import record
    from visloc_ros.tools.bag import GT_TOPIC, IMAGE_TOPIC, IMU_TOPIC, INFO_TOPIC, ODOM_TOPIC, iter_messages, topics

    tr = drive(short_tunnel.centreline, False, seed=1, height=1.3, start=2.0, distance=4.0, speed=2.0,
               lateral=-1.7)
    runs = [record(short_tunnel, tr, "dim", tmp_path / f"r{k}", camera_hz=5.0, seed=9) for k in range(2)]
    r = runs[0]
    info = topics(r.bag)
    n_frames = len(r.frames)
    assert n_frames == len(read_csv(r.csv)) == info[IMAGE_TOPIC][1] == info[INFO_TOPIC][1]
    assert info[IMU_TOPIC][1] == len(tr) and info[ODOM_TOPIC][1] == info[GT_TOPIC][1] == len(tr) // 4 + (len(tr) % 4 > 0)
    assert info[IMAGE_TOPIC][0] == "sensor_msgs/msg/Image" and info[ODOM_TOPIC][0] == "nav_msgs/msg/Odometry"
    a = [(m.topic, m.t_ns, m.raw) for m in iter_messages(runs[0].bag)]
    b = [(m.topic, m.t_ns, m.raw) for m in iter_messages(runs[1].bag)]
    assert a == b                                                       # same seed -> same messages
    ds = read_csv(r.csv)
    assert np.allclose(ds.xyz, tr.xyz[r.frames], atol=1e-3)
    with pytest.raises(VislocError, match="already holds a recorded run"):
        record(short_tunnel, tr, "dim", tmp_path / "r0", camera_hz=5.0, seed=9)
