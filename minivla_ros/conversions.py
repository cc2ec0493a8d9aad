"""Messages <-> numpy, with the checks that turn bad input into a clear error.

Each `*_from_msg` raises ValueError naming what was wrong; nodes log that and drop the message.
The standard messages of the robot interface are read by interfaces.py and images.py (no rclpy, so
bag2data shares them); their writers are here, beside the readers of our own messages.
"""

from __future__ import annotations

import math

import numpy as np
import cv2
from builtin_interfaces.msg import Duration, Time
from cv_bridge import CvBridge
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from minivla_core.actions import check_action
from minivla_core.config import RobotConfig, observation_label
from minivla_core.timed import check_chunk
from minivla_ros.images import decode_image
from minivla_ros.msg import ActionChunk, ActionCommand, RobotState

_bridge = CvBridge()


def image_to_msg(image: np.ndarray, stamp: Time, frame_id: str = "camera") -> Image:
    msg = _bridge.cv2_to_imgmsg(np.ascontiguousarray(image), encoding="rgb8")
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def compressed_image_to_msg(image: np.ndarray, stamp: Time, frame_id: str = "camera",
                            format: str = "jpeg") -> CompressedImage:
    ok, data = cv2.imencode(".jpg" if format == "jpeg" else ".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {format}")
    msg = CompressedImage(format=format, data=data.tobytes())
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def image_from_msg(msg: Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB, or ValueError naming what the image is instead. Rows are read `step`
    bytes apart, so a driver's row padding is skipped rather than read as pixels."""
    if msg.encoding != "rgb8" or msg.height != size or msg.width != size:
        raise ValueError(f"image is {msg.width}x{msg.height} {msg.encoding or '(no encoding)'}, "
                         f"expected {size}x{size} rgb8")
    return decode_image(msg.data, msg.height, msg.width, msg.step, msg.encoding)


def state_to_msg(state: np.ndarray, stamp: Time, observation: str) -> RobotState:
    msg = RobotState()
    msg.header.stamp = stamp
    msg.observation = observation
    msg.state = np.asarray(state, dtype=np.float32).tolist()
    return msg


def state_from_msg(msg: RobotState, size: int, observation: str) -> np.ndarray:
    """The state as numbers, if it is of the `observation` protocol and `size` finite numbers."""
    if msg.observation != observation:
        raise ValueError(f"robot state is of the {observation_label(msg.observation or '(unnamed)')} protocol, "
                         f"expected {observation_label(observation)} (set env.observation of the publisher, or "
                         f"use a checkpoint trained on {msg.observation or 'it'})")
    if len(msg.state) != size:  # before reading the numbers of a state of any length
        raise ValueError(f"state has {len(msg.state)} numbers, expected {size}")
    state = np.asarray(msg.state, dtype=np.float32)
    if state.shape != (size,):
        raise ValueError(f"state has {state.size} numbers, expected {size}")
    if not np.all(np.isfinite(state)):
        raise ValueError(f"state contains NaN or infinite values at {np.flatnonzero(~np.isfinite(state)).tolist()}")
    return state


def action_from_msg(msg: ActionCommand) -> np.ndarray:
    """The commanded action, if it is within the arm's limits (check_action); never clipped into them."""
    return check_action(msg.action)


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_from_seconds(seconds: float) -> Time:
    """The whole seconds apart (seconds * 1e9 of a wall-clock time is past a double's exact integers); a fraction
    that rounds to a whole second carries over."""
    whole = math.floor(seconds)
    nanosec = round((seconds - whole) * 1e9)
    return Time(sec=whole + nanosec // 1_000_000_000, nanosec=nanosec % 1_000_000_000)


def chunk_to_msg(actions: np.ndarray, first_due: float, period: float, episode: int, observation_stamp: Time,
                 chunk: int, frozen: int) -> ActionChunk:
    """A timed chunk (minivla_core/timed.py): actions (n, A), actions[0] due at `first_due` (seconds)."""
    return ActionChunk(header=Header(stamp=stamp_from_seconds(first_due)), period=float(period), episode=episode,
                       observation_stamp=observation_stamp, chunk=chunk, frozen=frozen, action_dim=actions.shape[1],
                       actions=np.asarray(actions, dtype=np.float32).ravel().tolist())


def chunk_from_msg(msg: ActionChunk, action_dim: int) -> tuple[float, np.ndarray]:
    """(the time actions[0] is due, the actions (n, action_dim)), each action within the arm's limits. Its size and
    period are checked before any per-action work (minivla_core/timed.py: check_chunk)."""
    numbers = len(msg.actions)
    if msg.action_dim != action_dim or not numbers or numbers % action_dim:
        raise ValueError(f"{numbers} numbers in rows of {msg.action_dim}; expected rows of {action_dim}")
    check_chunk(numbers // action_dim, msg.period)
    actions = np.asarray(msg.actions, dtype=np.float32).reshape(-1, action_dim)
    for action in actions:
        check_action(action, action_dim)
    return stamp_to_seconds(msg.header.stamp), actions


# --- writers of the robot interface's standard messages (readers: interfaces.py) -----------------------------
def pose_to_msg(position, stamp: Time, frame_id: str = "world") -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    msg.pose.orientation.w = 1.0
    return msg


def joint_state_to_msg(names: list[str], positions, stamp: Time) -> JointState:
    msg = JointState(name=list(names), position=[float(v) for v in positions])
    msg.header.stamp = stamp
    return msg


COMMAND_TYPES = {"TwistStamped": TwistStamped, "JointTrajectory": JointTrajectory,
                 "Float64MultiArray": Float64MultiArray}  # robot.action_type -> its message class (ours aside)


def command_msgs(action: np.ndarray, robot: RobotConfig, stamp: Time, period: float) -> list:
    """One action -> the messages that command it: the main command of robot.action_type, then the gripper's
    Float64 when robot.gripper_topic is set (without one, every number is the main command's: a robot with no
    gripper). `period` (seconds) is when a trajectory point falls due."""
    values = [float(v) for v in action]
    motion, gripper = (values[:-1], values[-1]) if robot.gripper_topic else (values, None)
    if robot.action_type == "TwistStamped":
        if len(motion) != 3:
            raise ValueError(f"a TwistStamped command carries 3 numbers (x, y, z), got {len(motion)} of an action of "
                             f"{len(values)}{' (the last to robot.gripper_topic)' if gripper is not None else ''}")
        msg = TwistStamped()
        msg.header.stamp, msg.header.frame_id = stamp, robot.action_frame
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (v * robot.velocity_scale for v in motion)
    elif robot.action_type == "JointTrajectory":
        seconds = int(period)
        point = JointTrajectoryPoint(positions=motion,
                                     time_from_start=Duration(sec=seconds, nanosec=int((period - seconds) * 1e9)))
        msg = JointTrajectory(joint_names=list(robot.action_joints), points=[point])
        msg.header.stamp = stamp
    elif robot.action_type == "Float64MultiArray":
        msg = Float64MultiArray(data=motion)
    else:
        raise ValueError(f"robot.action_type {robot.action_type!r} is not supported")
    return [msg] if gripper is None else [msg, Float64(data=gripper)]


def plan_markers(path: np.ndarray, frame_id: str, stamp: Time, executed: int):
    """A planned hand path ((n, 3) points, metres) -> visualization_msgs/MarkerArray: the whole path as one
    LINE_STRIP (namespace "planned", orange), and its first `executed` + 1 points, the part the robot executes
    before the next chunk, as another (namespace "executed", green, thicker). Each replaces its namespace's marker
    before it, so a viewer shows the newest chunk only. visualization_msgs is imported here: only a node with
    policy_node.publish_plan needs it."""
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker, MarkerArray

    points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(path, dtype=np.float64)]
    markers = []
    for namespace, part, rgb, width in (("planned", points, (1.0, 0.55, 0.0), 0.004),
                                        ("executed", points[: executed + 1], (0.1, 0.8, 0.2), 0.008)):
        marker = Marker(ns=namespace, id=0, type=Marker.LINE_STRIP, action=Marker.ADD, points=part)
        marker.header.stamp, marker.header.frame_id = stamp, frame_id
        marker.pose.orientation.w = 1.0
        marker.scale.x = width  # a line strip's width, metres
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = (*rgb, 1.0)
        markers.append(marker)
    return MarkerArray(markers=markers)
