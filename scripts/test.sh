#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run): set-up, code health, then every test in test/.
#
#   ./scripts/test.sh                   everything
#   ./scripts/test.sh -k matching -x    extra arguments go to pytest
#
# Tests that need a GPU (marker `gpu`) are skipped with the reason printed in the summary.
# LOFTR_TEST_TIMEOUT (seconds, default 900) bounds any single test so a hung one fails with a
# traceback instead of eating CI's time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$SECONDS

./scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-unset}" \
  "LOFTR_SHARED_DIR=$LOFTR_SHARED_DIR"

echo "[test] code health: ruff (errors, import order)"
ruff check .
echo "[test] code health: Python 3.8 syntax"
python scripts/check_py38.py
echo "[test] code health: package.xml"
python scripts/check_package_xml.py
echo "[test] code health: README tables"
python scripts/readme_tables.py --check

echo "[test] pytest"
python -m pytest test/ --timeout "${LOFTR_TEST_TIMEOUT:-900}" "$@"
echo "[test] all passed in $((SECONDS - started)) s"
