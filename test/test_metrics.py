import pytest

from visloc_ros.core.errors import DatasetError
from visloc_ros.core.metrics import PRED_COLUMNS, evaluate, write_predictions


def test_metrics_on_known_predictions(tmp_path):
    truth = tmp_path / "t.csv"
    truth.write_text("image,x,y,condition\na,0,0,day\nb,10,0,day\nc,0,10,night\nd,5,5,night\n")
    rows = [
        dict(image="a", x="1", y="0", cov_xx="1", cov_xy="0", cov_yy="1", latency_ms="10"),   # err 1, inside
        dict(image="b", x="10", y="3", cov_xx="1", cov_xy="0", cov_yy="1", latency_ms="20"),  # err 3, outside
        dict(image="c", x="0", y="30", cov_xx="900", cov_xy="0", cov_yy="900", latency_ms="30"),  # err 20, inside
        dict(image="d", latency_ms="40"),                                                    # withheld
    ]
    pred = tmp_path / "p.csv"
    write_predictions(pred, [{c: r.get(c, "") for c in PRED_COLUMNS} for r in rows])
    rep, m = evaluate(pred, truth, [2.0, 25.0])
    o = rep["overall"]
    assert o["n"] == 4 and o["answered"] == 3
    assert o["median_error"] == pytest.approx(3.0)
    assert o["within_2"] == pytest.approx(0.25) and o["within_25"] == pytest.approx(0.75)
    assert o["coverage_95"] == pytest.approx(2 / 3)
    assert o["latency_ms"]["p50"] == pytest.approx(25.0)
    assert rep["by_condition"]["night"]["answered"] == 1
    assert m.frame == "map"


def test_mismatched_files(tmp_path):
    truth = tmp_path / "t.csv"
    truth.write_text("image,x,y\na,0,0\n")
    pred = tmp_path / "p.csv"
    write_predictions(pred, [{c: "" for c in PRED_COLUMNS} | {"image": "zzz"}])
    with pytest.raises(DatasetError, match="no prediction matches"):
        evaluate(pred, truth, [1.0])
    bad = tmp_path / "bad.csv"
    bad.write_text("image,x\na,1\n")
    with pytest.raises(DatasetError, match="not a prediction file"):
        evaluate(bad, truth, [1.0])
