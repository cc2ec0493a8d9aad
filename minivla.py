"""The `minivla` command (setup.py's entry point; also `python -m minivla`).

The one module that imports both packages: the core's commands (minivla_core/cli.py: collect, train, eval,
info) and the ROS side's (minivla_ros/cli.py: run, policy, record, bag2data, teleop, params), one parser over
both. Where minivla_ros cannot be imported (a pip install of minivla alone), the core's commands work as ever and
each ROS command says what to install; where only rclpy or rosbags is missing, the ROS command that needs it says
so.
"""

from __future__ import annotations

import sys

from minivla_core import cli

# what minivla_ros/cli.py adds (a test keeps the two equal)
ROS_COMMANDS = ("teleop", "policy", "params", "run", "record", "bag2data")


def ros_commands() -> dict[str, cli.Command]:
    """The ROS side's commands, or stand-ins that say why they cannot run here."""
    try:
        from minivla_ros.cli import COMMANDS
    except ImportError as exc:
        why = (f"needs the ROS 2 side, the minivla_ros package, which cannot be imported ({exc}): install it with "
               f"`bash scripts/setup.sh` in a clone of the repository, or build the package with colcon and source "
               f"its install/setup.bash")
        return {name: cli.Command(None, "(not available here: needs the ROS 2 side, minivla_ros)", {}, unavailable=why)
                for name in ROS_COMMANDS}
    return COMMANDS


def commands() -> dict[str, cli.Command]:
    return {**cli.COMMANDS, **ros_commands()}


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, commands())


if __name__ == "__main__":
    sys.exit(main())
