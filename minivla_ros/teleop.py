"""Keyboard teleoperation in the terminal (`minivla teleop`): drive an arm with standard messages.

teleop_twist_keyboard is not on PyPI, so this is a small one in its spirit: a key sets the hand's
velocity, which holds until another key changes it; at `teleop.rate` the node publishes the velocity
as geometry_msgs/TwistStamped on cmd_vel and the gripper as std_msgs/Float64 on gripper_command, the
topics the simulator bridge takes (remap them for another robot). With `minivla record` running
beside it, what you do becomes demonstrations, for any task, scripted expert or not. Each key pressed
prints one line: the command now in force (direction, speed, gripper), or what the keys are.
Without a terminal to read keys from (stdin closed, a file or a pipe) it says so in one `error:` line
and exits with status 2.

    w / s   forward / back (+y / -y)       a / d   left / right (-x / +x)
    r / f   up / down (+z / -z)            space or k   stop
    g / h   close / open the gripper       + / -   speed up / down (x1.25)
    q       quit

Parameters: the fields of TeleopConfig (`teleop.*`).
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

from minivla_core.config import TeleopConfig
from minivla_ros import graph, qos
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node

DIRECTIONS = {"w": (0, 1, 0), "s": (0, -1, 0), "a": (-1, 0, 0), "d": (1, 0, 0), "r": (0, 0, 1), "f": (0, 0, -1),
              " ": (0, 0, 0), "k": (0, 0, 0)}
DIRECTION_NAMES = {(0, 1, 0): "forward (+y)", (0, -1, 0): "back (-y)", (-1, 0, 0): "left (-x)",
                   (1, 0, 0): "right (+x)", (0, 0, 1): "up (+z)", (0, 0, -1): "down (-z)"}
HELP = __doc__.split("\n\n")[2]


class Keys:
    """What the keys pressed so far ask for: a velocity (m/s, x, y, z), a gripper command, whether to quit."""

    def __init__(self, speed: float, max_speed: float):
        self.speed, self.max_speed = speed, max_speed
        self.direction = (0, 0, 0)
        self.gripper = -1.0  # open
        self.quit = False

    def press(self, key: str) -> bool:
        """Apply one key; False if it is not a teleop key (nothing changes)."""
        if key in DIRECTIONS:
            self.direction = DIRECTIONS[key]
        elif key in "gh":
            self.gripper = 1.0 if key == "g" else -1.0
        elif key in "+-":
            self.speed = min(self.max_speed, self.speed * (1.25 if key == "+" else 0.8))
        elif key in ("q", "\x04"):  # q or Ctrl-D (Ctrl-C still interrupts, as in any node)
            self.quit = True
        else:
            return False
        return True

    def describe(self) -> str:
        """The command in force, in words: "right (+x) at 0.10 m/s, gripper open"."""
        moving = DIRECTION_NAMES.get(self.direction)
        motion = f"{moving} at {self.speed:.2f} m/s" if moving else f"stopped (speed {self.speed:.2f} m/s)"
        return f"{motion}, gripper {'closed' if self.gripper > 0 else 'open'}"

    @property
    def velocity(self) -> tuple[float, float, float]:
        return tuple(self.speed * d for d in self.direction)


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        self.config = declare_section(self, "teleop", TeleopConfig())
        self.keys = Keys(self.config.speed, self.config.max_speed)
        self.twist_pub = self.create_publisher(TwistStamped, graph.CMD_VEL.name, qos.profile(graph.CMD_VEL))
        self.gripper_pub = self.create_publisher(Float64, graph.GRIPPER_COMMAND.name,
                                                 qos.profile(graph.GRIPPER_COMMAND))
        self.create_timer(1.0 / self.config.rate, self.tick)
        print(HELP, flush=True)

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
        msg.header.frame_id = "world"
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = self.keys.velocity
        self.gripper_pub.publish(Float64(data=self.keys.gripper))
        self.twist_pub.publish(msg)

    def say(self, key: str, known: bool) -> None:
        """One line per key pressed: the command now in force, or what the keys are."""
        if self.keys.quit:
            print("quit", flush=True)
        elif known:
            print(f"{key!r}: {self.keys.describe()}", flush=True)
        else:
            print(f"{key!r} is not a teleop key: w/s a/d r/f move, space or k stops, g/h close/open the gripper, "
                  f"+/- speed, q quits", flush=True)


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
