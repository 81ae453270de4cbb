"""Thin rclpy nodes around :mod:`visloc_ros.core`."""
