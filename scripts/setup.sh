#!/usr/bin/env bash
# Make .venv ready for loftr_ros: ROS 2 Python wheels, onnxruntime, (torch,) test tools and the
# package itself (editable), from package registries only. Idempotent: a second run that finds
# nothing changed takes well under a second.
#
#   ./scripts/setup.sh                 everything (what ./scripts/test.sh needs)
#   ./scripts/setup.sh --runtime-only  no torch, no test tools (what ./scripts/demo.sh needs)
#
# Environment:
#   LOFTR_PYTHON=python3.x   interpreter for a new .venv (default: the first of python3,
#                            python3.11, python3.12, python3.10 that is 3.10-3.12)
#   LOFTR_SKIP_TORCH=1       full set-up without PyTorch (the test suite needs it)
#   LOFTR_FORCE_SETUP=1      reinstall even when the stamps match
#
# Afterwards `source scripts/env.sh` gives a shell the same environment the scripts use.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
# Another venv's python may have left this behind; it makes rclpy fail to import here.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

mode=full
for arg in "$@"; do
  case "$arg" in
    --runtime-only) mode=runtime ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*"; }

# One set-up at a time per checkout (demo.sh and test.sh started together).
if command -v flock >/dev/null 2>&1; then
  lock="${TMPDIR:-/tmp}/loftr_ros-setup-$(printf '%s' "$repo" | sha256sum | cut -c1-12).lock"
  exec 9>"$lock"
  flock 9
fi

python_ok() {  # python_ok CMD: true if CMD runs and is Python 3.10-3.12
  "$1" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' >/dev/null 2>&1
}

find_python() {
  local candidate
  for candidate in ${LOFTR_PYTHON:-} python3 python3.11 python3.12 python3.10; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# --- 1. the virtual environment -------------------------------------------------------------
if [ -e "$venv" ] && ! python_ok "$venv/bin/python"; then
  say ".venv exists but its python does not run or is not 3.10-3.12: making a new one"
  rm -rf "$venv"
fi
if [ ! -e "$venv" ]; then
  if ! python=$(find_python); then
    echo "setup.sh: no Python 3.10-3.12 found (tried ${LOFTR_PYTHON:-} python3 python3.11" \
      "python3.12 python3.10); set LOFTR_PYTHON" >&2
    exit 1
  fi
  say "creating .venv with $python ($("$python" --version 2>&1))"
  if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    echo "setup.sh: '$python -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  fi
fi
py="$venv/bin/python"

# --- 2. dependencies, from requirements/*.txt -----------------------------------------------
req_files=(requirements/runtime.txt)
if [ "$mode" = full ]; then
  req_files+=(requirements/test.txt)
  if [ "${LOFTR_SKIP_TORCH:-0}" != 1 ]; then
    req_files+=(requirements/torch.txt)
  fi
fi

stamp_of() {  # a hash of everything that decides what gets installed
  (cd "$repo" && cat "$@" scripts/setup.sh && "$py" -c 'import sys; print(sys.version)') \
    | sha256sum | cut -c1-16
}
deps_stamp_file="$venv/.loftr_deps_stamp"
wanted="$(stamp_of "${req_files[@]}") ${req_files[*]}"
if [ "${LOFTR_FORCE_SETUP:-0}" != 1 ] && [ -f "$deps_stamp_file" ] \
    && grep -qxF -- "$wanted" "$deps_stamp_file"; then
  say "dependencies up to date (${req_files[*]})"
else
  say "installing ${req_files[*]}"
  started=$SECONDS
  pip_args=()
  for file in "${req_files[@]}"; do pip_args+=(-r "$repo/$file"); done
  "$py" -m pip install --disable-pip-version-check --progress-bar off "${pip_args[@]}" \
    | sed -e '/^Requirement already satisfied/d' -e '/^Looking in /d' \
          -e '/is ignored: it is neither a file nor a directory/d'
  # Full set-up satisfies a later --runtime-only request too: remember both.
  echo "$wanted" >>"$deps_stamp_file"
  if [ "$mode" = full ]; then
    echo "$(stamp_of requirements/runtime.txt) requirements/runtime.txt" >>"$deps_stamp_file"
  fi
  say "dependencies installed in $((SECONDS - started)) s"
fi

# --- 3. the package itself (editable) and its ament index entry -----------------------------
pkg_stamp_file="$venv/.loftr_pkg_stamp"
# The checkout's path is part of it: an editable install points at one place.
pkg_wanted=$(cd "$repo" && { cat setup.py setup.cfg; echo "$repo"; } | sha256sum | cut -c1-16)
if [ "${LOFTR_FORCE_SETUP:-0}" = 1 ] || [ ! -f "$pkg_stamp_file" ] \
    || [ "$(cat "$pkg_stamp_file")" != "$pkg_wanted" ]; then
  say "installing loftr_ros (editable)"
  # --use-pep517: older pips would otherwise fall back to `setup.py develop`.
  (cd "$repo" && "$py" -m pip install --disable-pip-version-check -q --no-deps --use-pep517 \
    --no-build-isolation -e .)
  echo "$pkg_wanted" >"$pkg_stamp_file"
fi
# An editable install leaves setup.py's data_files out; link them into the venv prefix as
# `colcon build --symlink-install` would, so that AMENT_PREFIX_PATH=.venv finds the package.
# Cheap, so done every time (picks up new launch/config files).
"$py" "$repo/scripts/link_data_files.py" --prefix "$venv"

say "ready: $("$py" --version 2>&1) in .venv ($mode)"
