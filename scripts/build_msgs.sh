#!/usr/bin/env bash
# Build the visloc_ros messages (msg/*.msg) with rosidl against the ROS 2 PyPI wheels in a venv, and
# install them into that venv so `from visloc_ros.msg import LocalizationStatus` works with no extra
# environment. Usage: scripts/build_msgs.sh [VENV] (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${1:-.venv}" && pwd)
BUILD=build/msgs
rm -rf "$BUILD"
mkdir -p "$BUILD"
export AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
cmake -S . -B "$BUILD" -DVISLOC_INTERFACES_ONLY=ON -DBUILD_TESTING=OFF \
  -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
  -DCMAKE_BUILD_TYPE=Release > "$BUILD/configure.log" 2>&1 || { tail -40 "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" > "$BUILD/build.log" 2>&1 || { tail -40 "$BUILD/build.log"; exit 1; }
cmake --install "$BUILD" > "$BUILD/install.log" 2>&1 || { tail -40 "$BUILD/install.log"; exit 1; }
# rosidl writes an empty visloc_ros/__init__.py into site-packages; it would shadow the (editable) Python
# package. Without it the folder is a namespace portion that visloc_ros/__init__.py merges (extend_path).
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ -f "$SITE/visloc_ros/__init__.py" ] && [ ! -d "$SITE/visloc_ros/core" ] && [ ! -s "$SITE/visloc_ros/__init__.py" ]; then
  rm -f "$SITE/visloc_ros/__init__.py"
fi
cd /  # import from the installed package, not the source folder
"$VENV/bin/python" -c "from visloc_ros.msg import LocalizationStatus as S; print('built visloc_ros/msg/LocalizationStatus, LOCALIZED =', S.LOCALIZED)"
