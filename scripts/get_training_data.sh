#!/usr/bin/env bash
# Gather the default training corpus (Debian wallpaper photos + scikit-image samples) into data/.
# Needs apt-get/dpkg and an `apt-get update` done once; installs nothing system-wide.
#     ./scripts/get_training_data.sh [--out DIR] [--extra YOUR_IMAGES_DIR] [--cache DIR]
# (a later --out overrides the default "data").
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=python3
[ -x "$repo/.venv/bin/python" ] && python="$repo/.venv/bin/python"
cd "$repo"
exec "$python" -m loftr_ros.training.data_sources --out data "$@"
