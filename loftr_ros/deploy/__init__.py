"""Deployment: torch -> ONNX export, INT8 for the CPU, ONNX audits and fp16 range checks."""
