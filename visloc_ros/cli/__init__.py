"""The ``visloc`` command (see :mod:`visloc_ros.cli.main`)."""
