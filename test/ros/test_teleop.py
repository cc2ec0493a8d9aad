"""`minivla teleop`: keys typed into a real terminal (a pty) move the simulated arm through standard messages."""

import os
import pty
import subprocess
import sys
import time

import rclpy
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import JointState

from minivla_ros import bringup, qos
from minivla_ros.interfaces import joint_positions, position_from_pose
from minivla_ros.teleop import Keys
from ros_helpers import wait_until


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


def test_keys_typed_in_a_terminal_move_the_simulated_arm(node_process):
    _, bridge_output = node_process("sim_bridge", **{"env.image_size": 32})
    node = rclpy.create_node("test_teleop_watch")
    poses, joints = [], []
    node.create_subscription(PoseStamped, "ee_pose", poses.append, qos.SENSOR_QOS)
    node.create_subscription(JointState, "joint_states", joints.append, qos.SENSOR_QOS)
    master, slave = pty.openpty()
    teleop = subprocess.Popen(bringup.node_command("teleop", bringup.DEFAULT_PARAMS, {"teleop.speed": 0.1}),
                              stdin=slave, stdout=slave, stderr=slave, env=bringup.ros_environment(),
                              cwd=bringup.ROOT, start_new_session=True)
    os.close(slave)
    screen = b""

    def read_screen():
        nonlocal screen
        import select
        while select.select([master], [], [], 0)[0]:
            try:
                screen += os.read(master, 4096)
            except OSError:
                break

    try:
        assert wait_until(node, lambda: len(poses) > 3 and len(joints) > 3, 60), bridge_output()
        assert wait_until(node, lambda: b"close / open the gripper" in screen, 30, read_screen), screen
        start = position_from_pose(poses[-1])
        opening = joint_positions(joints[-1], ["gripper"])[0]
        # What the keys do, not how far the arm gets in a given time (that depends on how many steps the bridge and
        # the teleop node took meanwhile, which depends on scheduling).
        os.write(master, b"d")  # right: +x at 0.1 m/s
        assert wait_until(node, lambda: b"'d': right (+x) at 0.10 m/s, gripper open" in screen, 30, read_screen), \
            screen
        assert wait_until(node, lambda: position_from_pose(poses[-1])[0] - start[0] > 0.05, 60, read_screen), screen
        moved = position_from_pose(poses[-1]) - start
        assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, (moved, screen)
        os.write(master, b" g")  # stop, close the gripper: one read, one velocity and gripper published together
        assert wait_until(node, lambda: b"'g': stopped (speed 0.10 m/s), gripper closed" in screen, 30,
                          read_screen), screen
        assert wait_until(node, lambda: joint_positions(joints[-1], ["gripper"])[0] < opening - 0.1, 60,
                          read_screen), screen
        # Closing, the bridge was taking commands sent after the stop. Ten steps to settle, then ten more: still.
        seen = len(poses)
        assert wait_until(node, lambda: len(poses) > seen + 10, 60, read_screen)
        here, seen = position_from_pose(poses[-1]), len(poses)
        assert wait_until(node, lambda: len(poses) > seen + 10, 60, read_screen)
        assert abs(position_from_pose(poses[-1])[0] - here[0]) < 0.003  # stopped
        os.write(master, b"q")
        deadline = time.monotonic() + 10
        while teleop.poll() is None and time.monotonic() < deadline:
            read_screen()
            time.sleep(0.1)
        assert teleop.returncode == 0, screen
    finally:
        if teleop.poll() is None:
            teleop.kill()
        teleop.wait()
        os.close(master)
        node.destroy_node()


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
