"""Keyboard teleoperation in the terminal (`minivla teleop`): drive an arm with standard messages.

teleop_twist_keyboard is not on PyPI, so this is a small one in its spirit: a key sets the hand's
velocity, which holds until another key changes it; at `teleop.rate` the node publishes the velocity
as geometry_msgs/TwistStamped on cmd_vel and the gripper as std_msgs/Float64 on gripper_command, the
topics the simulator bridge takes (remap them for another robot). With `minivla record` running
beside it, what you do becomes demonstrations, for any task, scripted expert or not.

    w / s   forward / back (+y / -y)       a / d   left / right (-x / +x)
    r / f   up / down (+z / -z)            space or k   stop
    g / h   close / open the gripper       + / -   speed up / down (x1.25)
    q       quit

Parameters: the fields of TeleopConfig (`teleop.*`).
"""

from __future__ import annotations

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
HELP = __doc__.split("\n\n")[2]


class Keys:
    """What the keys pressed so far ask for: a velocity (m/s, x, y, z), a gripper command, whether to quit."""

    def __init__(self, speed: float, max_speed: float):
        self.speed, self.max_speed = speed, max_speed
        self.direction = (0, 0, 0)
        self.gripper = -1.0  # open
        self.quit = False

    def press(self, key: str) -> None:
        if key in DIRECTIONS:
            self.direction = DIRECTIONS[key]
        elif key in "gh":
            self.gripper = 1.0 if key == "g" else -1.0
        elif key in "+-":
            self.speed = min(self.max_speed, self.speed * (1.25 if key == "+" else 0.8))
        elif key in ("q", "\x04"):  # q or Ctrl-D (Ctrl-C still interrupts, as in any node)
            self.quit = True

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
            key = os.read(sys.stdin.fileno(), 1).decode(errors="replace")
            if not key:  # end of input
                self.keys.quit = True
                break
            self.keys.press(key.lower() if key.isalpha() else key)
        if self.keys.quit:
            raise KeyboardInterrupt
        msg = TwistStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "world"
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = self.keys.velocity
        self.gripper_pub.publish(Float64(data=self.keys.gripper))
        self.twist_pub.publish(msg)


def main(args=None) -> None:
    if not sys.stdin.isatty():
        print("error: teleop reads keys from a terminal; run it in one (stdin is not a tty)", flush=True)
        raise SystemExit(2)
    saved = termios.tcgetattr(sys.stdin)
    tty.setcbreak(sys.stdin.fileno())  # keys arrive one at a time, unechoed
    try:
        run_node(TeleopNode, args)
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    main()
