#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run): set-up, code health, then every test in test/.
#
#   ./scripts/test.sh                   everything
#   ./scripts/test.sh -k matching -x    extra arguments go to pytest
#
# Every check runs even when an earlier one failed, so one run shows every problem; the exit
# status is non-zero if any failed. Tests that need a GPU (marker `gpu`) are skipped with the
# reason printed in pytest's summary. LOFTR_TEST_TIMEOUT (seconds, default 900) bounds any single
# test, so a hung one fails with a traceback instead of eating CI's time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
started=$SECONDS

./scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID" \
  "FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-unset}" \
  "LOFTR_SHARED_DIR=$LOFTR_SHARED_DIR"

failed=()
check() {  # check NAME COMMAND...: run it, remember a failure, go on
  local name=$1
  shift
  echo "[test] $name"
  if ! "$@"; then
    failed+=("$name")
  fi
}

check "ruff (errors, import order)" ruff check .
check "Python 3.8 syntax" python scripts/check_py38.py
check "package.xml" python scripts/check_package_xml.py
check "README tables" python scripts/readme_tables.py --check
if ((${#failed[@]})); then
  echo "[test] code health FAILED: ${failed[*]} (the tests run anyway)"
else
  echo "[test] code health passed; pytest follows ($((SECONDS - started)) s so far)"
fi

check "pytest" python -m pytest test/ --timeout "${LOFTR_TEST_TIMEOUT:-900}" "$@"
if ((${#failed[@]})); then
  echo "[test] FAILED: ${failed[*]} (after $((SECONDS - started)) s)"
  exit 1
fi
