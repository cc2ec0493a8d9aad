#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

# ROS traffic stays on loopback and each run gets its own log folder; the ROS tests reserve a domain
# no other run holds and load config/fastdds_loopback.xml (minivla_ros.bringup.ros_environment).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_HOME="$(mktemp -d -t minivla-ros-home.XXXXXX)"
export MUJOCO_GL="${MUJOCO_GL:-egl}"

.venv/bin/python -m pytest test -q --durations=10 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests; the suite under test/ is missing or broken" >&2
fi
exit "$status"
