#!/usr/bin/env bash
# The README's main command: set up (idempotent), then run the sim-plus-policy ROS graph
# (simulator bridge + policy node with the bundled push-v3 checkpoint) for 20 episodes on
# layouts never seen in training, and report each episode and the policy node's timing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The ROS environment (loopback-only DDS, a domain of its own, a fresh ROS_HOME, headless MuJoCo) is set
# by minivla run itself: minivla_ros.bringup.ros_environment.
exec .venv/bin/minivla run --episodes "${EPISODES:-20}" --json runs/main/run.json "$@"
