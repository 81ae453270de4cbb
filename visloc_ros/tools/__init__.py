"""Input/output beside the core: rosbag2 files (read/write through `rosbags`, no ROS install needed)."""
