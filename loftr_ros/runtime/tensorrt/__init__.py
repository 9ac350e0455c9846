"""TensorRT: platform probing, the engine cache, INT8 calibration, building and running engines."""
