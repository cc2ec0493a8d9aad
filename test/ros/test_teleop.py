"""`minivla teleop`: keys typed into a real terminal (a pty) move the simulated arm through standard messages, or
any arm that takes a hand velocity, on the topics of its robot section."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest
import rclpy
import yaml
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from minivla_core.config import RobotConfig
from minivla_core.errors import ConfigError
from minivla_ros import bringup, graph, qos
from minivla_ros.interfaces import joint_positions, position_from_pose
from minivla_ros.teleop import Keys, check_teleop_robot
from ros_helpers import wait_until


class Terminal:
    """A command running in a terminal of its own (a pty): keys typed into it, and what it printed so far."""

    def __init__(self, command: list[str]):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave,
                                        env=bringup.ros_environment(), cwd=bringup.ROOT, start_new_session=True)
        os.close(slave)
        self.screen = b""

    def read(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                self.screen += os.read(self.master, 4096)
            except OSError:  # the command ended and its terminal closed
                break

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def quit(self) -> int:
        """Type q; the exit status (None if it is still running 10 s later)."""
        self.type(b"q")
        deadline = time.monotonic() + 10
        while self.process.poll() is None and time.monotonic() < deadline:
            self.read()
            time.sleep(0.1)
        self.read()
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.master)


def test_keys_set_a_velocity_that_holds_until_the_next_key():
    keys = Keys(speed=0.1, max_speed=0.2)
    assert keys.velocity == (0.0, 0.0, 0.0) and keys.gripper == -1.0
    keys.press("d")
    assert keys.velocity == (0.1, 0.0, 0.0)
    keys.press("+"), keys.press("+"), keys.press("+"), keys.press("+")
    assert keys.velocity == (0.2, 0.0, 0.0)  # capped at max_speed
    keys.press("r")
    assert keys.velocity == (0.0, 0.0, 0.2)
    keys.press(" ")
    assert keys.velocity == (0.0, 0.0, 0.0)
    keys.press("g")
    assert keys.gripper == 1.0 and not keys.quit
    keys.press("q")
    assert keys.quit


def test_each_key_says_the_command_now_in_force():
    """Pressing a key used to print nothing: what the arm is asked to do now is one line per key."""
    keys = Keys(speed=0.1, max_speed=0.2)
    assert keys.describe() == "stopped (speed 0.10 m/s), gripper open"
    assert keys.press("d") and keys.describe() == "right (+x) at 0.10 m/s, gripper open"
    assert keys.press("+") and keys.describe() == "right (+x) at 0.12 m/s, gripper open"
    assert keys.press("g") and keys.describe() == "right (+x) at 0.12 m/s, gripper closed"
    assert keys.press(" ") and keys.describe() == "stopped (speed 0.12 m/s), gripper closed"
    assert not keys.press("x") and keys.describe() == "stopped (speed 0.12 m/s), gripper closed"  # not a key
    assert "g / h   close / open the gripper" in keys.help()
    assert "g/h close/open the gripper" in keys.not_a_key("x")


def test_without_a_gripper_g_and_h_are_not_keys_and_nothing_mentions_a_gripper():
    """A robot with no gripper (robot.gripper_topic empty): g and h are answered as any other unknown key, with what
    the keys are, and neither the help nor the command in force speaks of a gripper."""
    keys = Keys(speed=0.1, max_speed=0.2, gripper=False)
    assert keys.gripper is None and keys.describe() == "stopped (speed 0.10 m/s)"
    for key in "gh":
        assert not keys.press(key) and keys.gripper is None
        assert keys.not_a_key(key) == (f"{key!r} is not a teleop key: w/s a/d r/f move, space or k stops, +/- speed, "
                                       f"q quits")
    assert keys.press("d") and keys.describe() == "right (+x) at 0.10 m/s" and keys.velocity == (0.1, 0.0, 0.0)
    assert "w / s" in keys.help() and "q       quit" in keys.help()
    assert "gripper" not in keys.help() and "g / h" not in keys.help()


def test_teleop_follows_the_robot_section_and_refuses_a_robot_it_cannot_drive():
    robot = RobotConfig()  # no robot section: the simulator bridge's standard interface
    assert (robot.action_topic, robot.gripper_topic, robot.action_frame) == (graph.CMD_VEL.name,
                                                                               graph.GRIPPER_COMMAND.name, "world")
    for action_type in ("ActionCommand", "TwistStamped"):
        check_teleop_robot(RobotConfig(action_type=action_type))
    for action_type in ("JointTrajectory", "Float64MultiArray"):
        with pytest.raises(ConfigError, match=f"robot.action_type is {action_type}.*teleop publishes a hand velocity"):
            check_teleop_robot(RobotConfig(action_type=action_type))


def test_keys_typed_in_a_terminal_move_the_simulated_arm(node_process):
    _, bridge_output = node_process("sim_bridge", **{"env.image_size": 32})
    node = rclpy.create_node("test_teleop_watch")
    poses, joints = [], []
    node.create_subscription(PoseStamped, "ee_pose", poses.append, qos.SENSOR_QOS)
    node.create_subscription(JointState, "joint_states", joints.append, qos.SENSOR_QOS)
    terminal = Terminal(bringup.node_command("teleop", bringup.DEFAULT_PARAMS, {"teleop.speed": 0.1}))
    try:
        assert wait_until(node, lambda: len(poses) > 3 and len(joints) > 3, 60), bridge_output()
        assert wait_until(node, lambda: b"close / open the gripper" in terminal.screen, 30, terminal.read), \
            terminal.screen
        start = position_from_pose(poses[-1])
        opening = joint_positions(joints[-1], ["gripper"])[0]
        # What the keys do, not how far the arm gets in a given time (that depends on how many steps the bridge and
        # the teleop node took meanwhile, which depends on scheduling).
        terminal.type(b"d")  # right: +x at 0.1 m/s
        assert wait_until(node, lambda: b"'d': right (+x) at 0.10 m/s, gripper open" in terminal.screen, 30,
                          terminal.read), terminal.screen
        assert wait_until(node, lambda: position_from_pose(poses[-1])[0] - start[0] > 0.05, 60, terminal.read), \
            terminal.screen
        moved = position_from_pose(poses[-1]) - start
        assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, (moved, terminal.screen)
        terminal.type(b" g")  # stop, close the gripper: one read, one velocity and gripper published together
        assert wait_until(node, lambda: b"'g': stopped (speed 0.10 m/s), gripper closed" in terminal.screen, 30,
                          terminal.read), terminal.screen
        assert wait_until(node, lambda: joint_positions(joints[-1], ["gripper"])[0] < opening - 0.1, 60,
                          terminal.read), terminal.screen
        # Closing, the bridge was taking commands sent after the stop. Ten steps to settle, then ten more: still.
        seen = len(poses)
        assert wait_until(node, lambda: len(poses) > seen + 10, 60, terminal.read)
        here, seen = position_from_pose(poses[-1]), len(poses)
        assert wait_until(node, lambda: len(poses) > seen + 10, 60, terminal.read)
        assert abs(position_from_pose(poses[-1])[0] - here[0]) < 0.003  # stopped
        assert terminal.quit() == 0, terminal.screen
    finally:
        terminal.close()
        node.destroy_node()


def test_a_gripperless_robot_gets_twists_on_its_topic_and_no_gripper_command(tmp_path, ros):
    """`minivla teleop --config myarm.yaml` for an arm with no gripper (a TwistStamped arm, 3-number actions): the
    twists go to the robot section's topic in its frame; no gripper command is published at all, and nothing on
    the screen speaks of a gripper (g is an unknown key)."""
    myarm = tmp_path / "myarm.yaml"
    myarm.write_text(yaml.safe_dump({"robot": {
        "action_type": "TwistStamped", "action_topic": "arm/cmd_vel", "action_frame": "planar_base",
        "gripper_topic": "", "state_type": "PoseAndJoints", "state_joints": []}}))  # an empty list, as such a file has
    node = rclpy.create_node("test_teleop_gripperless_watch")
    twists, grippers, simulator_twists = [], [], []
    node.create_subscription(TwistStamped, "arm/cmd_vel", twists.append, qos.RELIABLE_QOS)
    node.create_subscription(Float64, graph.GRIPPER_COMMAND.name, grippers.append, qos.RELIABLE_QOS)
    node.create_subscription(TwistStamped, graph.CMD_VEL.name, simulator_twists.append, qos.RELIABLE_QOS)
    terminal = Terminal([sys.executable, "-m", "minivla", "teleop", "--config", str(myarm), "--speed", "0.1"])
    try:
        assert wait_until(node, lambda: b"publishing geometry_msgs/TwistStamped on arm/cmd_vel (frame planar_base)"
                          in terminal.screen, 60, terminal.read), terminal.screen
        assert wait_until(node, lambda: len(twists) > 3, 30, terminal.read), terminal.screen
        assert twists[-1].header.frame_id == "planar_base" and twists[-1].twist.linear.x == 0.0
        terminal.type(b"d")
        assert wait_until(node, lambda: b"'d': right (+x) at 0.10 m/s" in terminal.screen, 30, terminal.read), \
            terminal.screen
        assert wait_until(node, lambda: abs(twists[-1].twist.linear.x - 0.1) < 1e-9, 30, terminal.read)
        terminal.type(b"g")
        assert wait_until(node, lambda: b"'g' is not a teleop key: w/s a/d r/f move, space or k stops, +/- speed, "
                          b"q quits" in terminal.screen, 30, terminal.read), terminal.screen
        seen = len(twists)  # twenty more twists (a second at teleop.rate): no gripper command among them
        assert wait_until(node, lambda: len(twists) > seen + 20, 30, terminal.read)
        assert abs(twists[-1].twist.linear.x - 0.1) < 1e-9  # g changed nothing
        assert grippers == [] and simulator_twists == []
        assert node.count_publishers(graph.GRIPPER_COMMAND.name) == 0 and node.count_publishers("arm/cmd_vel") == 1
        assert terminal.quit() == 0, terminal.screen
        assert b"gripper" not in terminal.screen.lower(), terminal.screen
    finally:
        terminal.close()
        node.destroy_node()


def test_teleop_for_a_robot_that_takes_no_velocity_says_so():
    terminal = Terminal([sys.executable, "-m", "minivla", "teleop", "--set", "robot.action_type=Float64MultiArray"])
    try:
        assert terminal.process.wait(60) == 2
        terminal.read()
        errors = [line for line in terminal.screen.decode().splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "robot.action_type is Float64MultiArray" in errors[0], terminal.screen
        assert "teleop publishes a hand velocity (TwistStamped)" in errors[0] and b"Traceback" not in terminal.screen
    finally:
        terminal.close()


def test_teleop_without_a_terminal_says_so():
    done = subprocess.run(bringup.node_command("teleop", bringup.DEFAULT_PARAMS, {}), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=bringup.ros_environment(), cwd=bringup.ROOT, timeout=60)
    assert done.returncode == 2 and "error: teleop reads keys from a terminal" in done.stdout


def test_teleop_with_stdin_closed_says_so_in_one_line():
    """With stdin closed (`<&-`) Python has no sys.stdin at all: teleop printed a traceback (AttributeError on
    sys.stdin.isatty()). The node, and `minivla teleop`, end with one error line and status 2."""
    node = bringup.node_command("teleop", bringup.DEFAULT_PARAMS, {})
    command = [sys.executable, "-m", "minivla", "teleop"]
    for argv in (node, command):
        done = subprocess.run(["bash", "-c", 'exec "$@" <&-', "closed-stdin", *argv], capture_output=True, text=True,
                              env=bringup.ros_environment(), cwd=bringup.ROOT, timeout=60)
        output = done.stdout + done.stderr
        assert done.returncode == 2 and "Traceback" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert errors == ["error: teleop reads keys from a terminal; run it in one (stdin is closed)"], output
