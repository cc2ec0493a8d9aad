"""Messages <-> numpy, with the checks that turn bad input into a clear error.

Each `*_from_msg` raises ValueError naming what was wrong; nodes log that and drop the message.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from cv_bridge import CvBridge
from sensor_msgs.msg import Image

from minivla_core.actions import check_action
from minivla_core.config import observation_label
from minivla_ros.images import decode_image
from minivla_ros.msg import ActionCommand, RobotState

_bridge = CvBridge()


def image_to_msg(image: np.ndarray, stamp: Time, frame_id: str = "camera") -> Image:
    msg = _bridge.cv2_to_imgmsg(np.ascontiguousarray(image), encoding="rgb8")
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
    state = np.asarray(msg.state, dtype=np.float32)
    if state.shape != (size,):
        raise ValueError(f"state has {state.size} numbers, expected {size}")
    if not np.all(np.isfinite(state)):
        raise ValueError(f"state contains NaN or infinite values at {np.flatnonzero(~np.isfinite(state)).tolist()}")
    return state


def action_from_msg(msg: ActionCommand) -> np.ndarray:
    """The commanded action, if it is within the arm's limits (check_action); never clipped into them."""
    return check_action(msg.action)
