#!/usr/bin/env bash
# The README's main command: set up (idempotent), then run the bundled push-v3 policy
# closed-loop on 20 goal/object layouts it never saw and report what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-egl}"
exec .venv/bin/minivla eval --checkpoint checkpoints/push_v3.pt --episodes "${EPISODES:-20}" --json runs/main/eval.json "$@"
