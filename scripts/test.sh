#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# The headless browser of the view's tests (test/test_view_browser.py): only the test command installs it. Where it
# cannot be installed, those tests are skipped, each saying why.
bash scripts/setup_browser.sh || echo "[test] no headless browser: the browser tests will be skipped" >&2

# The ROS environment (loopback-only DDS, a domain no other run holds, a fresh ROS_HOME) is set by
# test/ros/conftest.py from minivla_ros.bringup.ros_environment; MUJOCO_GL=egl (headless) by
# minivla_core/envs/metaworld_env.py before it imports MuJoCo.

.venv/bin/python -m pytest test -q --durations=10 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests; the suite under test/ is missing or broken" >&2
fi
exit "$status"
