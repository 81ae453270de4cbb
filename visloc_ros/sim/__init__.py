"""A generated GPS-denied world for demos and tests: MuJoCo-rendered tunnel and building worlds, sensors
(camera, IMU, wheel odometry, ground truth) along trajectories, lighting conditions, rosbag2 + CSV output."""

WORLDS = ("tunnel", "building", "wings")  # worlds.make_world's names, here without imports for the CLI's choices
