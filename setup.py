"""ament_python packaging for loftr_ros (also installable with plain pip)."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "loftr_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*.pt", "weights/*.onnx", "weights/*.json", "data/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [os.path.join("resource", PACKAGE)]),
        (os.path.join("share", PACKAGE), ["package.xml"]),
        (os.path.join("share", PACKAGE, "launch"), glob("launch/*.launch.py")),
        (os.path.join("share", PACKAGE, "config"), glob("config/*.yaml") + glob("config/*.xml")),
    ],
    # onnxruntime is an extra, `pip install .[cpu]`: required outright, pip would put the CPU
    # wheel over an installed onnxruntime-gpu (both own the `onnxruntime` package). TensorRT and
    # pycuda come with JetPack; requirements/runtime.txt adds the ROS wheels for a machine
    # without ROS.
    install_requires=["setuptools", "numpy", "opencv-python-headless<5"],
    extras_require={"cpu": ["onnxruntime"]},
    zip_safe=False,
    maintainer="loftr_ros developers",
    maintainer_email="loftr-ros@example.com",
    description="Coarse LoFTR image matching for ROS 2 (TensorRT on Jetson, onnxruntime, torch).",
    license="Apache-2.0",
    python_requires=">=3.8",
    entry_points={
        "console_scripts": [
            "matcher_node = loftr_ros.ros.node:main",
            "image_player = loftr_ros.ros.image_player:main",
            "loftr-match = loftr_ros.cli.match:main",
            "loftr-export = loftr_ros.cli.export:main",
            "loftr-build-engine = loftr_ros.cli.build_engine:main",
            "loftr-train = loftr_ros.cli.train:main",
            "loftr-eval = loftr_ros.cli.evaluate:main",
        ],
    },
)
