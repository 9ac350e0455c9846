#!/usr/bin/env bash
# Turn a trained run into the bundled default model:
#   1. calibrate match_threshold, fine.min_peak_mass and fine.keep_sharpest on planar and 3D
#      validation pairs of the training photos (never the held-out photos),
#   2. write loftr_ros/weights/lite.pt (weights + config),
#   3. export the two stages lite_encoder.onnx + lite_matcher.onnx at 640x480, and
#      lite_320x240_encoder.onnx + lite_320x240_matcher.onnx for the Jetson profile (opset 13:
#      parsed by TensorRT 8.2 and newer), each checked against PyTorch under onnxruntime on a
#      real photo pair,
#   4. write loftr_ros/weights/lite_encoder_int8.onnx, the INT8 encoder (with the float
#      lite_matcher.onnx), calibrated on the training photos: an option for onnxruntime on the
#      CPU, passed as weights (the default everywhere is the float lite_encoder.onnx).
# Usage: scripts/ship_default_model.sh RUN_DIR/model.pt [TRAIN_DIR]
#        scripts/ship_default_model.sh --export-only [TRAIN_DIR]   (steps 3-4 from lite.pt as is)
set -euo pipefail
cd "$(dirname "$0")/.."
weights=${1:?usage: scripts/ship_default_model.sh RUN_DIR/model.pt [TRAIN_DIR]}
train_dir=${2:-data/train}
source scripts/env.sh
if [ "$weights" != "--export-only" ]; then
    python -m loftr_ros.training.calibrate "$weights" --data "$train_dir" \
        --out loftr_ros/weights/lite.pt
fi
python - <<'PY'
import cv2
import numpy as np

from loftr_ros.deploy.onnx_export import export_two_stage
from loftr_ros.matching.preprocess import prepare
from loftr_ros.synthetic.homography import make_pair

photo = cv2.imread("loftr_ros/data/coffee.png", cv2.IMREAD_GRAYSCALE)
image0, image1, _ = make_pair(np.random.default_rng(11), photo, 640, 480)
# 640x480: the default; 320x240: the Jetson profile (config/jetson.yaml), same weights.
for out, size in (("lite.onnx", (640, 480)), ("lite_320x240.onnx", (320, 240))):
    pair = (prepare(image0, size)[0], prepare(image1, size)[0])
    report = export_two_stage("loftr_ros/weights/lite.pt", f"loftr_ros/weights/{out}",
                              opset=13, input_size=size, verify_images=pair)
    print(f"exported {report.encoder_path} + {report.matcher_path}: onnxruntime vs torch "
          f"max abs diff {report.max_abs_diff}")
PY
loftr-export loftr_ros/weights/lite.pt loftr_ros/weights/lite.onnx --opset 13 \
    --int8-calibration "$train_dir"
ls -l loftr_ros/weights/
sha256sum loftr_ros/weights/lite.pt loftr_ros/weights/lite*.onnx
