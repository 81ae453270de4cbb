#!/usr/bin/env python3
"""Rewrite the build-machine paths baked into the ROS 2 PyPI wheels' CMake files (run once per venv).

The wheels' exported CMake targets point at /opt/python/cp311-cp311/... (their build machine); CMake then
refuses the imported targets ("includes non-existent path"). This points them at this venv's Python
include directory and numpy's. Idempotent.
"""
import sys
import sysconfig
from pathlib import Path

import numpy

venv = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
subs = {
    "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    "/opt/python/cp311-cp311/include/python3.11": sysconfig.get_paths()["include"],
}
changed = 0
for f in (venv / "share").rglob("*.cmake"):
    text = f.read_text(errors="surrogateescape")
    new = text
    for old, repl in subs.items():
        new = new.replace(old, repl)
    if new != text:
        f.write_text(new, errors="surrogateescape")
        changed += 1
print(f"fix_ros_wheel_cmake: {changed} CMake file(s) rewritten under {venv / 'share'}")
