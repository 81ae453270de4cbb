"""A generated GPS-denied world for demos and tests: MuJoCo-rendered tunnel and building worlds, sensors
(camera, IMU, wheel odometry, ground truth) along trajectories, lighting conditions, rosbag2 + CSV output."""
