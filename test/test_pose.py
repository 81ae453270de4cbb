import numpy as np
import pytest

from visloc_ros.core.pose import (CHI2_2D_95, UNOBSERVED_VAR, Crowding, PoseModel, clearly_better, estimate,
                                  fit_alpha, mahalanobis2, quat_from_yaw, yaw_from_quat)


def test_yaw_quaternion_roundtrip_ros_order():
    yaw = np.linspace(-3.0, 3.0, 13)
    q = quat_from_yaw(yaw)
    assert np.allclose(q[:, :2], 0) and np.allclose(np.linalg.norm(q, axis=1), 1)
    assert np.allclose(yaw_from_quat(q), yaw)
    assert np.allclose(quat_from_yaw(np.pi / 2), [0, 0, np.sqrt(0.5), np.sqrt(0.5)])  # x, y, z, w


def test_consensus_drops_outliers_and_covariance_is_honest():
    m = PoseModel(radius=5.0, spacing=1.0, alpha=1.0)
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [100, 100, 0], [-80, 50, 0]], float)
    scores = np.array([0.90, 0.89, 0.88, 0.91, 0.70])  # the single best is an outlier
    est = estimate(pos, scores, m, yaws=np.array([0.1, 0.2, 0.0, 3.0, -2.0]))
    assert np.linalg.norm(est.xyz[:2] - [0.33, 0.33]) < 0.5
    assert set(est.inliers) == {0, 1, 2}
    assert abs(est.yaw - 0.1) < 0.15
    # disagreeing candidates widen the covariance; agreeing ones give a tight one
    tight = estimate(pos[:3], scores[:3], m)
    assert np.all(np.linalg.eigvalsh(tight.cov2) > 0)
    assert np.trace(est.cov2) > 10 * np.trace(tight.cov2)
    assert est.cov6[3, 3] == UNOBSERVED_VAR and est.cov6[5, 5] < 1.0 and tight.cov6[5, 5] == UNOBSERVED_VAR


def test_fit_alpha_reaches_95_percent_coverage():
    rng = np.random.default_rng(0)
    true_cov = np.diag([4.0, 1.0])
    err = rng.multivariate_normal([0, 0], true_cov, 4000)
    raw = np.tile(np.diag([1.0, 0.25]), (len(err), 1, 1))  # right shape, wrong scale (x4)
    a = fit_alpha(err, raw)
    assert abs(a - 2.0) < 0.1
    cover = np.mean(mahalanobis2(err, a * a * raw) <= CHI2_2D_95)
    assert abs(cover - 0.95) < 0.01


def test_clearly_better_needs_more_than_two_trials_and_one_percent():
    assert not clearly_better(0.43, 0.4275, 400)   # 1 trial of 400
    assert clearly_better(0.964, 0.941, 222)       # 5 trials of 222
    assert not clearly_better(0.70, 0.69, 100)     # 1 trial: 1 %, but not more than 2 trials
    assert not clearly_better(0.9, 0.895, 2000)    # 10 trials, but 0.5 %
    assert clearly_better(0.9, 0.88, 2000)


def test_crowding_counts_the_places_within_the_radius():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (300, 2))
    ids = np.array([0, 7, 299, 7])
    want = [(np.linalg.norm(xy - xy[i], axis=1) <= 8.0).sum() for i in ids]
    np.testing.assert_array_equal(Crowding(xy)(ids, 8.0), want)
    assert Crowding(xy)(ids[:1], 0.0)[0] == 1  # itself
    # a map along y (the slab runs along its longer axis), with places exactly at the radius and a huge radius
    line = np.c_[rng.normal(0, 0.5, 200), np.arange(200.0)]
    count = Crowding(line)
    assert count.axis == 1
    for r in (3.0, 10.0, 1e6):
        want = [(np.linalg.norm(line - line[i], axis=1) <= r).sum() for i in range(200)]
        np.testing.assert_array_equal(count(np.arange(200), r), want)


def test_crowded_stretch_does_not_outvote_a_sparse_place_by_numbers():
    # the frame's best match (0.80) is a lone place at the origin; six mediocre candidates (0.75-0.76) come from a
    # stretch of the map 100 m away that was photographed every metre (60 places within the radius of each)
    pos = np.array([[0, 0, 0]] + [[100 + k, 0, 0] for k in range(6)], float)
    scores = np.array([0.80, 0.76, 0.76, 0.75, 0.75, 0.75, 0.75])
    crowd = np.array([1.0] + [60.0] * 6)
    plain = PoseModel(radius=10.0, spacing=1.0, temperature=0.05)
    assert np.linalg.norm(estimate(pos, scores, plain).xyz[:2] - [102.4, 0]) < 1.0  # the crowd wins by numbers
    est = estimate(pos, scores, PoseModel(radius=10.0, spacing=1.0, temperature=0.05, crowding=True), crowd=crowd)
    assert np.allclose(est.xyz[:2], [0, 0]) and list(est.inliers) == [0]
    # the covariance still sees the disagreeing candidates; a uniform crowd changes nothing
    assert np.trace(est.cov2) > 100
    even = estimate(pos, scores, PoseModel(radius=10.0, spacing=1.0, temperature=0.05, crowding=True),
                    crowd=np.full(7, 5.0))
    np.testing.assert_allclose(even.xyz, estimate(pos, scores, plain).xyz)
    with pytest.raises(ValueError, match="crowd"):
        estimate(pos, scores, PoseModel(radius=10.0, spacing=1.0, crowding=True))
