"""visloc_ros: visual global localization for ROS 2 robots without GPS.

The ROS-free pipeline lives in :mod:`visloc_ros.core`; the ``visloc`` command in :mod:`visloc_ros.cli`;
the thin rclpy nodes in :mod:`visloc_ros.nodes`.
"""

__version__ = "0.1.0"
