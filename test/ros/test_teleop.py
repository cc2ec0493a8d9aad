"""`minivla teleop`: keys typed into a real terminal (a pty) move the simulated arm through standard messages."""

import os
import pty
import subprocess
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
        assert wait_until(node, lambda: position_from_pose(poses[-1])[0] - start[0] > 0.05, 60, read_screen), screen
        moved = position_from_pose(poses[-1]) - start
        assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, (moved, screen)
        os.write(master, b" g")  # stop, close the gripper: one read, one velocity and gripper published together
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
