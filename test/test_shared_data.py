"""Real images from ../shared/data (or $VISLOC_EVAL_DATA): skipped cleanly where the data is absent."""
import json

import pytest

from conftest import SHARED_DATA, run_visloc

CORRIDOR = SHARED_DATA / "corridor"
pytestmark = pytest.mark.skipif(not (CORRIDOR / "map.csv").is_file(), reason=f"no evaluation data at {SHARED_DATA}")


def test_corridor_end_to_end_beats_chance(tmp_path):
    m = tmp_path / "corridor"
    r = run_visloc("build-map", "--images-csv", str(CORRIDOR / "map.csv"), "--out", str(m))
    assert r.returncode == 0, r.stderr
    pred = tmp_path / "pred.csv"
    r = run_visloc("localize", "--map", str(m), "--images-csv", str(CORRIDOR / "queries.csv"), "--out", str(pred))
    assert r.returncode == 0, r.stderr
    r = run_visloc("eval", "--pred", str(pred), "--truth", str(CORRIDOR / "queries.csv"), "--radius", "2",
                   "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    o = json.loads((tmp_path / "ev" / "metrics.json").read_text())["overall"]
    # chance is 5/111 = 4.5 %; the data README's baseline is ~60 %
    assert o["within_2"] > 0.4
    assert 0.5 < o["coverage_95"] <= 1.0
