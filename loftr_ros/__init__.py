"""loftr_ros: coarse LoFTR image matching for ROS 2, from PyTorch to TensorRT on a Jetson."""

__version__ = "0.1.0"
