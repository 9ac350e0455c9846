#!/usr/bin/env bash
# Turn a trained run into the bundled default model:
#   1. calibrate fine.min_peak_mass on training-domain pairs (never the held-out photos),
#   2. write loftr_ros/weights/lite.pt (weights + config),
#   3. export loftr_ros/weights/lite.onnx (opset 13: parsed by TensorRT 8.2 and newer), checked
#      against PyTorch under onnxruntime on a real photo pair,
#   4. write loftr_ros/weights/lite_int8.onnx, the INT8 graph onnxruntime loads on the CPU,
#      calibrated on the training photos.
# Usage: scripts/ship_default_model.sh RUN_DIR/model.pt [TRAIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
weights=${1:?usage: scripts/ship_default_model.sh RUN_DIR/model.pt [TRAIN_DIR]}
train_dir=${2:-data/train}
source scripts/env.sh
python -m loftr_ros.training.calibrate "$weights" --data "$train_dir" \
    --out loftr_ros/weights/lite.pt
python - <<'PY'
import cv2
import numpy as np

from loftr_ros.deploy.onnx_export import export_onnx
from loftr_ros.matching.preprocess import prepare
from loftr_ros.synthetic.homography import make_pair

photo = cv2.imread("loftr_ros/data/coffee.png", cv2.IMREAD_GRAYSCALE)
image0, image1, _ = make_pair(np.random.default_rng(11), photo, 640, 480)
pair = (prepare(image0, (640, 480))[0], prepare(image1, (640, 480))[0])
report = export_onnx("loftr_ros/weights/lite.pt", "loftr_ros/weights/lite.onnx", opset=13,
                     verify_images=pair)
print(f"exported {report.onnx_path}: outputs {report.output_names}, onnxruntime vs torch "
      f"max abs diff {report.max_abs_diff}")
# The Jetson profile's smaller input (config/jetson.yaml): same weights, another static graph.
small = (prepare(image0, (320, 240))[0], prepare(image1, (320, 240))[0])
report = export_onnx("loftr_ros/weights/lite.pt", "loftr_ros/weights/lite_320x240.onnx",
                     opset=13, input_size=(320, 240), verify_images=small)
print(f"exported {report.onnx_path}: max abs diff {report.max_abs_diff}")
PY
loftr-export loftr_ros/weights/lite.pt loftr_ros/weights/lite_int8.onnx --opset 13 \
    --int8-calibration "$train_dir"
sha256sum loftr_ros/weights/lite.pt loftr_ros/weights/lite*.onnx
