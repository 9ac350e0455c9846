"""Matching without ROS or torch: the Matcher facade, pre-processing, confidence -> matches,
sub-cell refinement, geometry and drawing (numpy/OpenCV)."""
