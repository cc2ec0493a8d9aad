"""What an action is, for every part of the project: the simulator, datasets, the policy node.

An action is a few numbers, each in [-ACTION_LIMIT, ACTION_LIMIT]. The simulated arms (Meta-World,
Fetch) take ACTION_DIM of them: the hand's velocity along x, y and z, and the gripper's effort last
(Meta-World's action space). A robot of your own takes its command's own size: 3 for a TwistStamped
and no gripper, one per joint for a trajectory; a checkpoint records its size (action_dim), and where
the gripper is (the last number, only when the robot has one) is the robot interface's to say
(minivla_ros/interfaces.py). check_action is the one gate: a command, a demonstration step or a
sampled action outside it is refused, never clipped into range.
"""

from __future__ import annotations

import numpy as np

ACTION_DIM = 4
ACTION_LIMIT = 1.0
HAND_STEP = 0.01  # metres the hand moves in one simulator step for an action of 1 (Meta-World's action_scale)


def outside_limits(values: np.ndarray) -> np.ndarray:
    """True where a number lies outside [-ACTION_LIMIT, ACTION_LIMIT] (1e-6 allows float32 rounding at the limit)."""
    return np.abs(values) > ACTION_LIMIT + 1e-6


def check_action(action, size: int = ACTION_DIM) -> np.ndarray:
    """The action as float32 if it is `size` finite numbers (the simulators' ACTION_DIM unless a robot's own) within
    [-ACTION_LIMIT, ACTION_LIMIT], else ValueError. Never clipped: a command of 1e9 is a bug upstream, not a request
    for full speed."""
    if not isinstance(action, np.ndarray) and hasattr(action, "__len__") and len(action) != size:
        # (a message's sequence: its length is known before a million numbers of it are read)
        raise ValueError(f"action has {len(action)} numbers, expected {size}")
    values = np.asarray(action, dtype=np.float64)
    if values.shape != (size,):
        raise ValueError(f"action has {values.size} numbers, expected {size}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"action contains NaN or infinite values at {np.flatnonzero(~np.isfinite(values)).tolist()}")
    outside = outside_limits(values)
    if outside.any():
        raise ValueError(f"action {values.tolist()} is outside the limits [-{ACTION_LIMIT:g}, {ACTION_LIMIT:g}] at "
                         f"{np.flatnonzero(outside).tolist()}")
    return np.clip(values, -ACTION_LIMIT, ACTION_LIMIT).astype(np.float32)
