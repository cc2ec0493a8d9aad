#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

# ROS traffic stays on loopback, each run gets its own domain and log folder.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
export ROS_HOME="$(mktemp -d -t minivla-ros-home.XXXXXX)"
export MUJOCO_GL="${MUJOCO_GL:-egl}"

.venv/bin/python -m pytest test -q --durations=10 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests; the suite under test/ is missing or broken" >&2
fi
exit "$status"
