"""The core must import and run with no ROS at all (rclpy and message packages blocked)."""
import subprocess
import sys

CODE = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        root = name.split('.')[0]
        if root in ('rclpy', 'rosidl_runtime_py', 'builtin_interfaces') or root.endswith('_msgs'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import pkgutil, visloc_ros.core as core
for m in pkgutil.iter_modules(core.__path__):
    importlib.import_module('visloc_ros.core.' + m.name)
from visloc_ros.core.localizer import Localizer
assert not any(k.startswith('rclpy') or k.endswith('_msgs') for k in sys.modules)
print('ok')
"""


def test_core_imports_without_ros():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
