"""Keyboard teleoperation in the terminal (`minivla teleop`): drive an arm with standard messages.

teleop_twist_keyboard is not on PyPI, so this is a small one in its spirit: a key sets the hand's
velocity, which holds until another key changes it; at `teleop.rate` the node publishes the velocity
as geometry_msgs/TwistStamped on robot.action_topic in robot.action_frame, and the gripper as
std_msgs/Float64 on robot.gripper_topic: the robot section, as the policy node reads it. Its defaults
are the simulator bridge's topics, cmd_vel (world frame) and gripper_command. A robot with no gripper
(robot.gripper_topic empty) gets no gripper command, and g / h are not keys for it. A robot that takes
joint positions or plain arrays (robot.action_type JointTrajectory or Float64MultiArray) cannot be
driven by a hand velocity: the node says so in one `error:` line and exits with status 2. With
`minivla record` running beside it, what you do becomes demonstrations, for any task, scripted expert
or not. Each key pressed prints one line: the command now in force (direction, speed, gripper), or
what the keys are. Without a terminal to read keys from (stdin closed, a file or a pipe) it says so in
one `error:` line and exits with status 2.

    w / s   forward / back (+y / -y)       a / d   left / right (-x / +x)
    r / f   up / down (+z / -z)            space or k   stop
    + / -   speed up / down (x1.25)        q       quit
    g / h   close / open the gripper

Parameters: the fields of TeleopConfig (`teleop.*`) and RobotConfig (`robot.*`).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import tty

from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from std_msgs.msg import Float64

from minivla_core.config import RobotConfig, TeleopConfig
from minivla_core.errors import ConfigError
from minivla_ros import qos
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node

DIRECTIONS = {"w": (0, 1, 0), "s": (0, -1, 0), "a": (-1, 0, 0), "d": (1, 0, 0), "r": (0, 0, 1), "f": (0, 0, -1),
              " ": (0, 0, 0), "k": (0, 0, 0)}
DIRECTION_NAMES = {(0, 1, 0): "forward (+y)", (0, -1, 0): "back (-y)", (-1, 0, 0): "left (-x)",
                   (1, 0, 0): "right (+x)", (0, 0, 1): "up (+z)", (0, 0, -1): "down (-z)"}
HELP = __doc__.split("\n\n")[2]
# The action types whose robot takes a hand velocity: our ActionCommand robots (the simulated arms) take cmd_vel too.
VELOCITY_ACTION_TYPES = ("TwistStamped", "ActionCommand")


class Keys:
    """What the keys pressed so far ask for: a velocity (m/s, x, y, z), a gripper command (None: the robot has no
    gripper), whether to quit."""

    def __init__(self, speed: float, max_speed: float, gripper: bool = True):
        self.speed, self.max_speed = speed, max_speed
        self.direction = (0, 0, 0)
        self.gripper = -1.0 if gripper else None  # -1 open, 1 closed; None: no gripper to command
        self.quit = False

    def press(self, key: str) -> bool:
        """Apply one key; False if it is not a teleop key (nothing changes)."""
        if key in DIRECTIONS:
            self.direction = DIRECTIONS[key]
        elif key in "gh" and self.gripper is not None:  # without a gripper, not a key
            self.gripper = 1.0 if key == "g" else -1.0
        elif key in "+-":
            self.speed = min(self.max_speed, self.speed * (1.25 if key == "+" else 0.8))
        elif key in ("q", "\x04"):  # q or Ctrl-D (Ctrl-C still interrupts, as in any node)
            self.quit = True
        else:
            return False
        return True

    def describe(self) -> str:
        """The command in force, in words: "right (+x) at 0.10 m/s, gripper open" (no gripper: "right (+x) at
        0.10 m/s")."""
        moving = DIRECTION_NAMES.get(self.direction)
        motion = f"{moving} at {self.speed:.2f} m/s" if moving else f"stopped (speed {self.speed:.2f} m/s)"
        if self.gripper is None:
            return motion
        return f"{motion}, gripper {'closed' if self.gripper > 0 else 'open'}"

    @property
    def velocity(self) -> tuple[float, float, float]:
        return tuple(self.speed * d for d in self.direction)

    def help(self) -> str:
        """The key table printed at the start (the module's docstring), the gripper's line only with a gripper."""
        return "\n".join(line for line in HELP.splitlines()
                         if self.gripper is not None or not line.lstrip().startswith("g / h"))

    def not_a_key(self, key: str) -> str:
        """The line answering a key that is not a teleop key: what the keys are."""
        gripper = "g/h close/open the gripper, " if self.gripper is not None else ""
        return f"{key!r} is not a teleop key: w/s a/d r/f move, space or k stops, {gripper}+/- speed, q quits"


def check_teleop_robot(robot: RobotConfig) -> None:
    """A ConfigError unless the robot takes a hand velocity, the only command teleop sends."""
    if robot.action_type not in VELOCITY_ACTION_TYPES:
        raise ConfigError(f"robot.action_type is {robot.action_type}, which takes joint positions or plain numbers "
                          f"on {robot.action_topic}; teleop publishes a hand velocity (TwistStamped) and can drive "
                          f"only {' or '.join(VELOCITY_ACTION_TYPES)}")


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        self.config = declare_section(self, "teleop", TeleopConfig())
        self.robot = declare_section(self, "robot", RobotConfig())
        check_teleop_robot(self.robot)
        self.keys = Keys(self.config.speed, self.config.max_speed, gripper=bool(self.robot.gripper_topic))
        self.twist_pub = self.create_publisher(TwistStamped, self.robot.action_topic, qos.RELIABLE_QOS)
        self.gripper_pub = (self.create_publisher(Float64, self.robot.gripper_topic, qos.RELIABLE_QOS)
                            if self.robot.gripper_topic else None)
        self.create_timer(1.0 / self.config.rate, self.tick)
        gripper = f" and std_msgs/Float64 on {self.robot.gripper_topic}" if self.gripper_pub else ""
        print(f"{self.keys.help()}\n\npublishing geometry_msgs/TwistStamped on {self.robot.action_topic} (frame "
              f"{self.robot.action_frame}){gripper}, {self.config.rate:g} times a second", flush=True)

    def tick(self) -> None:
        while select.select([sys.stdin], [], [], 0)[0]:
            try:
                key = os.read(sys.stdin.fileno(), 1).decode(errors="replace")
            except OSError:  # the terminal went away (EIO): as the end of input
                key = ""
            if not key:  # end of input
                self.keys.quit = True
                break
            self.say(key, self.keys.press(key.lower() if key.isalpha() else key))
        if self.keys.quit:
            raise KeyboardInterrupt
        msg = TwistStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.robot.action_frame
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = self.keys.velocity
        if self.gripper_pub:
            self.gripper_pub.publish(Float64(data=self.keys.gripper))
        self.twist_pub.publish(msg)

    def say(self, key: str, known: bool) -> None:
        """One line per key pressed: the command now in force, or what the keys are."""
        if self.keys.quit:
            print("quit", flush=True)
        elif known:
            print(f"{key!r}: {self.keys.describe()}", flush=True)
        else:
            print(self.keys.not_a_key(key), flush=True)


def main(args=None) -> None:
    if sys.stdin is None or not sys.stdin.isatty():  # None: stdin closed
        where = "stdin is closed" if sys.stdin is None else "stdin is not a tty"
        print(f"error: teleop reads keys from a terminal; run it in one ({where})", flush=True)
        raise SystemExit(2)
    saved = termios.tcgetattr(sys.stdin)
    tty.setcbreak(sys.stdin.fileno())  # keys arrive one at a time, unechoed
    try:
        run_node(TeleopNode, args)
    finally:
        with contextlib.suppress(termios.error):  # a terminal that went away keeps no settings to restore
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    main()
