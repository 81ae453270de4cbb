"""Start visloc_ros: localizer_node, optionally robot_localization's two EKFs (REP-105) and RViz.

    ros2 launch visloc_ros localize.launch.py map:=/path/to/map image:=/camera/image_raw use_ekf:=true use_rviz:=true
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("visloc_ros")
    map_path = LaunchConfiguration("map")
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    image = LaunchConfiguration("image")
    backend = LaunchConfiguration("backend")
    return LaunchDescription([
        DeclareLaunchArgument("map", description="Map folder built by `visloc build-map`"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "localizer.yaml"),
                              description="localizer_node parameters (ROS 2 params YAML)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="Camera image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("odom", default_value="/odom", description="Wheel odometry topic (nav_msgs/Odometry)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the localizer node"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="Inference backend: auto, onnxruntime or tensorrt"),
        DeclareLaunchArgument("use_ekf", default_value="false",
                              description="Start robot_localization's odom and map EKFs with config/ekf.yaml"),
        DeclareLaunchArgument("ekf_params_file", default_value=os.path.join(share, "config", "ekf.yaml"),
                              description="robot_localization parameters"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="Start RViz with rviz/visloc.rviz"),
        Node(
            package="visloc_ros",
            executable="localizer_node",
            name="localizer_node",
            namespace=namespace,
            output="screen",
            parameters=[params_file, {"map_path": map_path, "backend": backend}],
            remappings=[("image", image), ("image/compressed", [image, "/compressed"]),
                        ("odom", LaunchConfiguration("odom"))],
        ),
        Node(
            package="robot_localization",
            executable="ekf_node",
            name="ekf_filter_node_odom",
            output="screen",
            parameters=[LaunchConfiguration("ekf_params_file")],
            remappings=[("odometry/filtered", "odometry/filtered_odom")],
            condition=IfCondition(LaunchConfiguration("use_ekf")),
        ),
        Node(
            package="robot_localization",
            executable="ekf_node",
            name="ekf_filter_node_map",
            output="screen",
            parameters=[LaunchConfiguration("ekf_params_file")],
            remappings=[("odometry/filtered", "odometry/filtered_map")],
            condition=IfCondition(LaunchConfiguration("use_ekf")),
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", os.path.join(share, "rviz", "visloc.rviz")],
            condition=IfCondition(LaunchConfiguration("use_rviz")),
        ),
    ])
