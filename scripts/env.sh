# Source me (bash): the environment scripts/test.sh and scripts/demo.sh run loftr_ros in, from
# .venv and the ROS 2 wheels, without a ROS install. For a shell of your own:
#     ./scripts/setup.sh && source scripts/env.sh && python -m pytest test/matching/test_postprocess.py
#
# Sets: PATH/VIRTUAL_ENV (.venv), AMENT_PREFIX_PATH (.venv, where scripts/setup.sh links the
# package's ament index entry and share/ files), RMW_IMPLEMENTATION (Fast DDS, the only RMW wheel),
# FASTDDS_DEFAULT_PROFILES_FILE (config/fastdds_localhost.xml: loopback only, 16 MB shared-memory
# segments so that full-size images arrive), ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a private
# ROS_DOMAIN_ID (random 10-99 unless already set), LOFTR_SHARED_DIR (<repo>/../shared unless set:
# seed weights for the seed-compatibility tests). Values already set are kept, except the ones
# that would mix another ROS install into this one.

_loftr_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Left behind by another venv's python, it makes `import rclpy` fail here (the wheels' start-up
# hook would skip setting LD_LIBRARY_PATH).
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

# A sourced /opt/ros/<distro>/setup.bash would put another rclpy and other librcl*.so in front of
# the wheels'. Keep everything else the user had.
_loftr_strip_ros() {  # print $1 (a :-list) without entries under /opt/ros/
  local IFS=: part out=""
  for part in $1; do
    case "$part" in /opt/ros/*|"") ;; *) out="${out:+$out:}$part" ;; esac
  done
  printf '%s' "$out"
}
if [ -n "${ROS_DISTRO:-}" ]; then
  echo "[env] note: a ROS 2 install ($ROS_DISTRO) is sourced; using the .venv wheels instead" >&2
fi
for _loftr_var in PYTHONPATH LD_LIBRARY_PATH; do
  _loftr_value=$(_loftr_strip_ros "${!_loftr_var:-}")
  if [ -n "$_loftr_value" ]; then export "$_loftr_var=$_loftr_value"; else unset "$_loftr_var"; fi
done
unset CMAKE_PREFIX_PATH COLCON_PREFIX_PATH ROS_PYTHON_VERSION _loftr_var _loftr_value
unset -f _loftr_strip_ros

export VIRTUAL_ENV="$_loftr_repo/.venv"
case ":$PATH:" in
  *":$VIRTUAL_ENV/bin:"*) ;;
  *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;;
esac
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp

if [ -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ] && [ -f "$_loftr_repo/config/fastdds_localhost.xml" ]
then
  export FASTDDS_DEFAULT_PROFILES_FILE="$_loftr_repo/config/fastdds_localhost.xml"
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# 10-99: clear of the default 0 and inside 0-101, the range whose ports cannot collide on Linux.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 90 + 10))}"
export LOFTR_SHARED_DIR="${LOFTR_SHARED_DIR:-$(dirname "$_loftr_repo")/shared}"
unset _loftr_repo
