"""`colcon build` of this package in a workspace (colcon from PyPI, ROS 2 from the wheels), then the installed
package is imported and its node started from the install space, as `ros2 run` would."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    if not shutil.which("colcon", path=str(VENV / "bin")):
        pytest.skip("colcon not installed in this environment")
    ws = tmp_path_factory.mktemp("ws")
    src = ws / "src" / "visloc_ros"
    ls = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if ls.returncode != 0:
        pytest.skip("not a git checkout: the package's files are listed with git ls-files")
    files = ls.stdout.split()
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    for m in (REPO / "models").glob("*.onnx*"):  # generated at set-up, installed by CMakeLists.txt
        shutil.copy2(m, src / "models" / m.name)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), PATH=f"{VENV / 'bin'}:{os.environ['PATH']}")
    r = subprocess.run([str(VENV / "bin" / "colcon"), "build", "--packages-select", "visloc_ros", "--cmake-args",
                        "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
                       cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return ws, env


def in_workspace(ws: Path, env: dict, cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"source {ws}/install/setup.bash && {cmd}"], cwd="/", env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_install_space_has_the_package(workspace):
    ws, env = workspace
    inst = ws / "install" / "visloc_ros"
    assert (inst / "lib" / "visloc_ros" / "localizer_node").is_file()
    assert (inst / "lib" / "visloc_ros" / "visloc").is_file()
    for f in ("launch/localize.launch.py", "config/localizer.yaml", "config/ekf.yaml", "rviz/visloc.rviz",
              "package.xml", "models/efficientnet_lite0_gem.onnx"):
        assert (inst / "share" / "visloc_ros" / f).is_file(), f
    r = in_workspace(ws, env, f"{sys.executable} -c \"import visloc_ros.nodes.localizer_node as n; "
                                "from visloc_ros.msg import LocalizationStatus; "
                                "from visloc_ros.core.descriptor import default_cnn_path; "
                                "print(n.__file__); print(default_cnn_path())\"")
    assert r.returncode == 0, r.stderr
    node_file, cnn = r.stdout.split()
    assert node_file.startswith(str(inst)) and cnn.startswith(str(inst / "share"))


def test_installed_node_starts(workspace, xy_map):
    ws, env = workspace
    exe = ws / "install" / "visloc_ros" / "lib" / "visloc_ros" / "localizer_node"
    r = in_workspace(ws, dict(env, ROS_DOMAIN_ID="201"),
                     f"timeout -s INT 12 {exe} --ros-args -p map_path:={xy_map} -r image:=/cam; true", timeout=60)
    assert "active: listening on /cam" in r.stdout + r.stderr, r.stdout + r.stderr
