#!/usr/bin/env bash
# The main job on a machine without a camera or a ROS install: image_player publishes rendered
# frames (a camera flying through a 3D room; --scene planar: a photo under a moving homography),
# the matcher node matches each one against the reference, and the demo prints a per-frame
# summary and a final line with matches/FPS/latency and the median error against the true
# correspondences. Debug images land in demo_out/.
#
#   ./scripts/demo.sh                  as above
#   ./scripts/demo.sh --backend torch  extra arguments go to `python -m loftr_ros.ros.demo`
#                                      (see --help); the torch backend needs ./scripts/setup.sh
#                                      without --runtime-only
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# The demo needs no PyTorch: a runtime-only set-up is enough (a full one satisfies it too).
./scripts/setup.sh --runtime-only
# shellcheck source=scripts/env.sh
source scripts/env.sh

exec python -m loftr_ros.ros.demo --out demo_out "$@"
