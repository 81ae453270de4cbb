import pytest

from visloc_ros.core.config import LocalizerConfig, load_config, load_params
from visloc_ros.core.errors import VislocError


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    threads: 1\n    top_k: 7\n    map_frame: map\n    min_score: 0\n")
    assert load_params(p)["map_frame"] == "map"
    c = load_config(p, backend="onnxruntime", threads=None)
    assert (c.threads, c.top_k, c.backend, c.min_score) == (1, 7, "onnxruntime", 0.0)


def test_validation():
    with pytest.raises(VislocError, match="backend"):
        LocalizerConfig(backend="cuda")
    with pytest.raises(VislocError, match="threads"):
        LocalizerConfig(threads=0)
    with pytest.raises(VislocError, match="must be int"):
        LocalizerConfig.from_params({"top_k": "ten"})


def test_bad_params_files(tmp_path):
    with pytest.raises(VislocError, match="cannot read"):
        load_params(tmp_path / "none.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("node:\n  params: {}\n")
    with pytest.raises(VislocError, match="ros__parameters"):
        load_params(p)
