"""A robot's standard ROS messages <-> the numbers a policy reads and writes (the `robot` config section).

No rclpy here: the policy node passes rclpy messages, `minivla bag2data` passes the `rosbags` reader's,
and both have the same fields, which is all these functions read. Writing messages needs the message
classes, so that half lives in conversions.py (rclpy side); each writer there has its reader here,
and the tests run every pair both ways.

    state   = [PoseStamped position x, y, z] + [JointState positions of robot.state_joints, by name]
    action  = TwistStamped linear x, y, z / robot.velocity_scale       (MoveIt Servo)
              JointTrajectory's first point, positions of robot.action_joints   (ros2_control)
              Float64MultiArray data, as it is                          (forward command controllers)
              + std_msgs/Float64 on robot.gripper_topic: the gripper, the action's last number
    With no gripper topic every action number is the main command's: a robot with no gripper gets actions of its
    command's own size (3 for a TwistStamped); a trajectory or array may carry a gripper joint as one of its own.

Every function raises ValueError naming what is missing or wrong (a joint, a field, a size); the node
logs it and drops the message, bag2data names the bag and the message.
"""

from __future__ import annotations

import numpy as np

from minivla_core.actions import ACTION_DIM
from minivla_core.config import CHOICES, RobotConfig

STANDARD_ACTIONS = ("TwistStamped", "JointTrajectory", "Float64MultiArray")  # the rest is our ActionCommand
# The most names or numbers a message's sequence may hold (joints, a command array, a trajectory's points); a longer
# one is refused before it is read (a million joint names would cost seconds of the node's only thread).
MAX_SEQUENCE = 4096


def check_length(sequence, what: str, limit: int = MAX_SEQUENCE):
    """`sequence` if it holds at most `limit` items; else ValueError (its length is known before any item is read)."""
    if len(sequence) > limit:
        raise ValueError(f"{what} holds {len(sequence)} items, more than the limit of {limit}")
    return sequence


def finite(values, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or infinite values at {np.flatnonzero(~np.isfinite(values)).tolist()}")
    return values


# --- state ---------------------------------------------------------------------------------------------------
def position_from_pose(msg) -> np.ndarray:
    """PoseStamped -> its position x, y, z."""
    p = msg.pose.position
    return finite([p.x, p.y, p.z], "pose position")


def joint_positions(msg, names: list[str]) -> np.ndarray:
    """JointState -> the positions of the joints `names`, in that order (a driver may list its joints in any
    order, or split them over several messages: the error names the ones missing from this one)."""
    listed = list(check_length(msg.name, "joint state names"))
    if len(msg.position) != len(listed):
        raise ValueError(f"joint state names {len(listed)} joints but gives {len(msg.position)} positions")
    missing = [name for name in names if name not in listed]
    if missing:
        raise ValueError(f"joint state lacks joint(s) {', '.join(missing)} (it has {', '.join(listed) or 'none'})")
    return finite([msg.position[listed.index(name)] for name in names], "joint positions")


def state_size(robot: RobotConfig) -> int:
    """How many numbers a PoseAndJoints state has."""
    return (3 if robot.state_pose_topic else 0) + (len(robot.state_joints) if robot.state_joint_topic else 0)


def assemble_state(robot: RobotConfig, pose: np.ndarray | None, joints: np.ndarray | None) -> np.ndarray:
    """The state vector from the newest pose position and joint positions (each None when not configured)."""
    parts = []
    if robot.state_pose_topic:
        parts.append(pose)
    if robot.state_joint_topic:
        parts.append(joints)
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


# --- actions -------------------------------------------------------------------------------------------------
def has_gripper(robot: RobotConfig) -> bool:
    """Whether the action ends with a gripper number of its own, which a hold keeps: on robot.gripper_topic, or in
    our ActionCommand (the simulated arms). Without a gripper topic a standard command carries every number as its
    own: a TwistStamped its x, y, z (a robot with no gripper), a trajectory or array its numbers (an arm's gripper
    joint, if any, one among them)."""
    return robot.action_type == "ActionCommand" or bool(robot.gripper_topic)


def motion_size(robot: RobotConfig, action_dim: int) -> int:
    """How many action numbers go to the main command (the last goes to the gripper topic when there is one)."""
    return action_dim - 1 if robot.gripper_topic else action_dim


def action_size(robot: RobotConfig) -> int | None:
    """How many numbers an action of this robot has: the main command's (a twist's 3, a trajectory's action_joints)
    and the gripper's when it has its own topic; the simulators' ACTION_DIM for ActionCommand; None for a
    Float64MultiArray, whose data is as long as the policy's action (bag2data takes the first command's length)."""
    gripper = 1 if robot.gripper_topic else 0
    if robot.action_type == "TwistStamped":
        return 3 + gripper
    if robot.action_type == "JointTrajectory":
        return len(robot.action_joints) + gripper
    if robot.action_type == "Float64MultiArray":
        return None
    return ACTION_DIM


def action_from_twist(msg, velocity_scale: float) -> np.ndarray:
    """TwistStamped -> action x, y, z (linear velocity / velocity_scale). Angular velocity must be zero: the
    policies here move the hand, not its orientation, and a turn asked for must not pass silently."""
    linear, angular = msg.twist.linear, msg.twist.angular
    if any(v != 0.0 for v in (angular.x, angular.y, angular.z)):
        raise ValueError(f"twist asks for an angular velocity ({angular.x:g}, {angular.y:g}, {angular.z:g}); "
                         f"only linear motion is supported")
    return finite([linear.x, linear.y, linear.z], "twist") / velocity_scale


def action_from_trajectory(msg, robot: RobotConfig) -> np.ndarray:
    """JointTrajectory -> the first point's positions of robot.action_joints, in that order."""
    listed = list(check_length(msg.joint_names, "joint trajectory names"))
    missing = [name for name in robot.action_joints if name not in listed]
    if missing:
        raise ValueError(f"joint trajectory lacks joint(s) {', '.join(missing)} (it has {', '.join(listed) or 'none'})")
    if not msg.points:
        raise ValueError("joint trajectory has no points")
    positions = list(check_length(msg.points[0].positions, "joint trajectory positions"))
    if len(positions) != len(listed):
        raise ValueError(f"joint trajectory names {len(listed)} joints but its first point gives "
                         f"{len(positions)} positions")
    return finite([positions[listed.index(name)] for name in robot.action_joints], "trajectory positions")


def action_from_array(msg) -> np.ndarray:
    """Float64MultiArray -> its data."""
    return finite(list(check_length(msg.data, "command array")), "command array")


def motion_from_msg(msg, robot: RobotConfig) -> np.ndarray:
    """The main command message of `robot.action_type` -> its action numbers (all but the gripper's, when the
    gripper has its own topic)."""
    if robot.action_type == "TwistStamped":
        return action_from_twist(msg, robot.velocity_scale)
    if robot.action_type == "JointTrajectory":
        return action_from_trajectory(msg, robot)
    if robot.action_type == "Float64MultiArray":
        return action_from_array(msg)
    raise ValueError(f"robot.action_type {robot.action_type!r} is not one of {', '.join(STANDARD_ACTIONS)}")


def gripper_from_msg(msg) -> float:
    """std_msgs/Float64 on the gripper topic -> the action's gripper number."""
    return float(finite([msg.data], "gripper command")[0])


def check_limits(action: np.ndarray, robot: RobotConfig) -> None:
    """ValueError if `action` lies beyond robot.action_limits in any dimension, or would move the hand faster than
    robot.max_speed: such an action is never published (not clipped: a policy asking for it is out of its depth)."""
    if robot.action_limits:
        beyond = np.abs(action) > np.asarray(robot.action_limits) + 1e-6
        if beyond.any():
            raise ValueError(f"action {np.round(action, 3).tolist()} is beyond robot.action_limits "
                             f"{robot.action_limits} at {np.flatnonzero(beyond).tolist()}")
    if robot.action_type == "TwistStamped" and robot.max_speed > 0:
        speed = float(np.linalg.norm(action[:3])) * robot.velocity_scale
        if speed > robot.max_speed + 1e-9:
            raise ValueError(f"action {np.round(action, 3).tolist()} moves the hand at {speed:.3f} m/s, beyond "
                             f"robot.max_speed {robot.max_speed} m/s")


def check_interface(robot: RobotConfig, action_dim: int | None, state_dim: int | None = None,
                    cameras: int | None = None) -> None:
    """ValueError naming the first field of `robot` that cannot work with a policy of these sizes (`action_dim`
    None: not known yet, e.g. bag2data before the first Float64MultiArray)."""
    for name in ("camera_type", "state_type", "action_type"):
        if getattr(robot, name) not in CHOICES[f"robot.{name}"]:
            raise ValueError(f"robot.{name} {getattr(robot, name)!r} is not one of "
                             f"{', '.join(CHOICES[f'robot.{name}'])}")
    if cameras is not None and robot.camera_topics and len(robot.camera_topics) != cameras:
        raise ValueError(f"robot.camera_topics names {len(robot.camera_topics)} topics, but the policy sees "
                         f"{cameras} camera(s)")
    if robot.state_type == "PoseAndJoints":
        if robot.state_joint_topic and not robot.state_joints:
            raise ValueError("robot.state_joint_topic is set but robot.state_joints names no joint")
        if state_size(robot) == 0:
            raise ValueError("robot.state_pose_topic and robot.state_joint_topic are both empty: no state")
        if state_dim is not None and state_size(robot) != state_dim:
            raise ValueError(f"the robot interface gives a state of {state_size(robot)} numbers (pose x, y, z: "
                             f"{'yes' if robot.state_pose_topic else 'no'}; joints: {robot.state_joints}), "
                             f"but the policy expects {state_dim}")
    if action_dim is None:
        action_dim = len(robot.action_limits) or None
    if robot.action_limits and (len(robot.action_limits) != action_dim or min(robot.action_limits) <= 0):
        raise ValueError(f"robot.action_limits must be {action_dim} numbers > 0 (one per action number), got "
                         f"{robot.action_limits}")
    if robot.max_speed < 0:
        raise ValueError(f"robot.max_speed must be >= 0 m/s (0: no cap), got {robot.max_speed}")
    if robot.action_type == "ActionCommand" and action_dim not in (None, ACTION_DIM):
        raise ValueError(f"robot.action_type ActionCommand commands the simulated arms, whose actions have "
                         f"{ACTION_DIM} numbers (x, y, z, gripper), but the policy's action has {action_dim}; a "
                         f"robot of your own takes a standard command type")
    if robot.action_type not in STANDARD_ACTIONS or action_dim is None:
        return
    motion = motion_size(robot, action_dim)
    if robot.action_type == "TwistStamped" and motion != 3:
        gripper = ("the last to robot.gripper_topic" if robot.gripper_topic else
                   "no gripper topic: a robot with no gripper takes actions of 3 numbers")
        raise ValueError(f"a TwistStamped command carries 3 numbers (x, y, z), but the policy's action has "
                         f"{action_dim} ({gripper})")
    if robot.action_type == "TwistStamped" and not robot.velocity_scale > 0:
        raise ValueError(f"robot.velocity_scale must be > 0 m/s, got {robot.velocity_scale}")
    if robot.action_type == "JointTrajectory" and len(robot.action_joints) != motion:
        raise ValueError(f"robot.action_joints names {len(robot.action_joints)} joints, but {motion} action "
                         f"numbers go to the trajectory")
