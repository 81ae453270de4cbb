"""Launch file, params YAML, ekf.yaml, RViz config and package.xml agree with the node (read, not mocked).

`ros2 launch`, robot_localization and RViz are not installable here; these tests read the files written for a
real ROS 2 install and check them against the real node (instantiated in this process).
"""
from __future__ import annotations

import ast
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "localize.launch.py"

# robot_localization ekf_node parameters used in config/ekf.yaml, as its documentation names them
RL_GLOBAL = {"frequency", "sensor_timeout", "two_d_mode", "publish_tf", "map_frame", "odom_frame", "base_link_frame",
             "world_frame", "smooth_lagged_data", "history_length", "transform_time_offset", "transform_timeout",
             "print_diagnostics", "publish_acceleration", "debug", "process_noise_covariance",
             "initial_estimate_covariance"}
RL_SENSOR = {"", "_config", "_differential", "_relative", "_queue_size", "_nodelay", "_rejection_threshold",
             "_pose_rejection_threshold", "_twist_rejection_threshold", "_remove_gravitational_acceleration",
             "_linear_acceleration_rejection_threshold"}


@pytest.fixture(scope="module")
def node(xy_map):
    os.environ.setdefault("ROS_DOMAIN_ID", "43")
    rclpy.init()
    from visloc_ros.nodes.localizer_node import LocalizerNode

    n = LocalizerNode(parameter_overrides=[rclpy.parameter.Parameter("map_path", value=str(xy_map)),
                                           rclpy.parameter.Parameter("autostart", value=False),
                                           rclpy.parameter.Parameter("publish_debug_image", value=True)])
    n.trigger_configure()
    yield n
    n.destroy_node()
    rclpy.shutdown()


def node_params(node) -> set[str]:
    return {name for name in node._parameters if not name.startswith(("qos_overrides", "use_sim_time",
                                                                    "start_type_description_service"))}


def test_params_yaml_matches_declared_parameters(node):
    doc = yaml.safe_load((REPO / "config" / "localizer.yaml").read_text())
    params = set(doc["/**"]["ros__parameters"])
    assert params == node_params(node)
    for name in node_params(node):
        assert node.describe_parameter(name).description, f"{name} has no description"


def test_yaml_values_are_accepted_by_the_node(node):
    from visloc_ros.core.config import LocalizerConfig, NodeConfig, load_params

    p = load_params(REPO / "config" / "localizer.yaml")
    LocalizerConfig.from_params(p)
    NodeConfig.from_params(p)
    res = node.set_parameters([rclpy.parameter.Parameter("top_k", value=0)])
    assert not res[0].successful and "top_k" in res[0].reason


def published_topics(node) -> set[str]:
    return {p.topic_name for p in node.publishers}


def test_node_publishes_the_documented_topics(node):
    assert {"/visloc/pose", "/visloc/status", "/diagnostics", "/visloc/places"} <= published_topics(node)


def _launch_tree():
    return ast.parse(LAUNCH.read_text())


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kw(call, key):
    for k in call.keywords:
        if k.arg == key:
            return ast.literal_eval(k.value) if isinstance(k.value, ast.Constant) else k.value
    return None


def test_launch_arguments_declared_with_descriptions_and_used():
    tree = _launch_tree()
    declared = {}
    for c in _calls(tree, "DeclareLaunchArgument"):
        declared[ast.literal_eval(c.args[0])] = _kw(c, "description")
    assert {"map", "params_file", "image", "namespace", "backend", "use_ekf", "use_rviz"} <= set(declared)
    assert all(isinstance(d, str) and d for d in declared.values())
    used = {ast.literal_eval(c.args[0]) for c in _calls(tree, "LaunchConfiguration")}
    assert used <= set(declared), used - set(declared)


def test_launch_executables_exist():
    tree = _launch_tree()
    nodes = [(_kw(c, "package"), _kw(c, "executable"), _kw(c, "name")) for c in _calls(tree, "Node")]
    cmake = (REPO / "CMakeLists.txt").read_text()
    ours = [n for n in nodes if n[0] == "visloc_ros"]
    assert ours and all(f"scripts/{exe}" in cmake and (REPO / "scripts" / exe).is_file() for _, exe, _ in ours)
    setup = (REPO / "setup.py").read_text()
    assert all(f"{exe} = " in setup for _, exe, _ in ours)
    # robot_localization's executable is ekf_node; its node names are the sections of ekf.yaml
    ekf_names = {name for pkg, exe, name in nodes if pkg == "robot_localization"}
    assert {exe for pkg, exe, _ in nodes if pkg == "robot_localization"} == {"ekf_node"}
    assert ekf_names == set(yaml.safe_load((REPO / "config" / "ekf.yaml").read_text()))
    assert ("rviz2", "rviz2", "rviz2") in nodes and (REPO / "rviz" / "visloc.rviz").is_file()
    assert "localizer.yaml" in LAUNCH.read_text() and "ekf.yaml" in LAUNCH.read_text()


def test_ekf_yaml_fuses_visloc_pose_per_rep105(node):
    doc = yaml.safe_load((REPO / "config" / "ekf.yaml").read_text())
    for name, sec in doc.items():
        p = sec["ros__parameters"]
        for key, val in p.items():
            m = re.fullmatch(r"(odom|pose|twist|imu)\d+(.*)", key)
            assert (m and m.group(2) in RL_SENSOR) or key in RL_GLOBAL, f"{name}: unknown parameter {key}"
            if key.endswith("_config"):
                assert len(val) == 15 and all(isinstance(v, bool) for v in val)
    odom = doc["ekf_filter_node_odom"]["ros__parameters"]
    mp = doc["ekf_filter_node_map"]["ros__parameters"]
    assert odom["world_frame"] == "odom" and "pose0" not in odom
    assert mp["world_frame"] == "map" and mp["pose0"] == "/visloc/pose" and mp["pose0"] in published_topics(node)
    assert mp["pose0_config"][:6] == [True, True, False, False, False, True]  # x, y, yaw
    assert mp["pose0_differential"] is False and mp["pose0_rejection_threshold"] > 0
    assert mp["smooth_lagged_data"] is True and mp["history_length"] > 0
    cfg = yaml.safe_load((REPO / "config" / "localizer.yaml").read_text())["/**"]["ros__parameters"]
    assert mp["map_frame"] == cfg["map_frame"] and mp["base_link_frame"] == cfg["base_frame"]


def test_rviz_topics_exist(node):
    doc = yaml.safe_load((REPO / "rviz" / "visloc.rviz").read_text())
    displays = doc["Visualization Manager"]["Displays"]
    topics = {d["Class"]: [] for d in displays}
    for d in displays:
        if "Topic" in d:
            topics[d["Class"]].append(d["Topic"]["Value"])
    launch = LAUNCH.read_text()
    for cls, names in topics.items():
        for t in names:
            if t.startswith("/visloc/"):
                assert t in published_topics(node), t
            elif t == "/odometry/filtered_map":
                assert '"odometry/filtered_map"' in launch
            elif t == "/camera/image_raw":
                assert 'default_value="/camera/image_raw"' in launch
    assert "/visloc/pose" in topics["rviz_default_plugins/PoseWithCovariance"]
    assert "/visloc/places" in topics["rviz_default_plugins/MarkerArray"]
    assert doc["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"


def test_package_xml_declares_every_message_package_used():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "visloc_ros"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    used = set()
    for f in (REPO / "visloc_ros" / "nodes").glob("*.py"):
        used |= set(re.findall(r"^\s*from (\w+_msgs|rclpy)\b", f.read_text(), re.M))
    assert used and used <= deps, used - deps
    assert {"rosidl_default_generators", "ament_cmake"} <= deps
    assert root.find("member_of_group").text == "rosidl_interface_packages"
