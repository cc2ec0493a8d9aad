"""The policy node alone, from a robot's config file (`minivla policy`), against a node playing a running robot; the
same file as a ROS parameter file (`minivla params`); the installed node launchers; the warning when a checkpoint
was not trained on the task a graph runs."""

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import rclpy
import yaml
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64

from minivla_core.checkpoint import read_checkpoint
from minivla_core.config import Config
from minivla_ros import bringup, graph, qos
from minivla_ros.conversions import image_to_msg, joint_state_to_msg, pose_to_msg
from ros_helpers import spin_for, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "push_v3.pt"
SIZE = read_checkpoint(CHECKPOINT)["env"]["image_size"]

# A robot file as a user writes one for their arm: its own topic names, standard messages, a task of its own.
ROBOT_FILE = {
    "robot": {"camera_topics": ["/myarm/camera"], "state_type": "PoseAndJoints", "state_pose_topic": "/myarm/tip_pose",
              "state_joint_topic": "/myarm/joint_states", "state_joints": ["gripper"], "action_type": "TwistStamped",
              "action_topic": "/myarm/cmd_vel", "action_frame": "myarm_base", "gripper_topic": "/myarm/gripper"},
    "policy_node": {"instruction": "push the puck to the goal"},
    "bag2data": {"task": "myarm"},
}


class RunningArm(Node):
    """Plays the robot's drivers: camera, tip pose and joints out; records the twists and gripper commands in."""

    def __init__(self):
        super().__init__("test_myarm")
        self.image_pub = self.create_publisher(Image, "/myarm/camera", qos.SENSOR_QOS)
        self.pose_pub = self.create_publisher(PoseStamped, "/myarm/tip_pose", qos.SENSOR_QOS)
        self.joints_pub = self.create_publisher(JointState, "/myarm/joint_states", qos.SENSOR_QOS)
        self.twists: list[TwistStamped] = []
        self.grippers: list[Float64] = []
        self.create_subscription(TwistStamped, "/myarm/cmd_vel", self.twists.append, qos.RELIABLE_QOS)
        self.create_subscription(Float64, "/myarm/gripper", self.grippers.append, qos.RELIABLE_QOS)
        self.picture = np.zeros((SIZE, SIZE, 3), np.uint8)

    def publish(self):
        stamp = self.get_clock().now().to_msg()
        self.image_pub.publish(image_to_msg(self.picture, stamp))
        self.pose_pub.publish(pose_to_msg([0.0, 0.6, 0.2], stamp))
        self.joints_pub.publish(joint_state_to_msg(["wrist", "gripper"], [0.3, 0.5], stamp))


def minivla(*args, cwd=ROOT, **options):
    return subprocess.run([sys.executable, "-m", "minivla", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=bringup.ros_environment(), **options)


def test_minivla_policy_commands_a_running_robot_from_its_file_and_stops_on_ctrl_c(ros, tmp_path):
    """`--params-file myarm.yaml` fails in rcl and nothing else started the policy node alone from a robot's file:
    `minivla policy` does, in this ROS domain, and Ctrl-C ends it cleanly with exit status 0. The checkpoint is named
    relative to the user's working directory, and was trained on push-v3, not on the file's task: it says so."""
    robot_file = tmp_path / "myarm.yaml"
    robot_file.write_text(yaml.safe_dump(ROBOT_FILE))
    shutil.copy(CHECKPOINT, tmp_path / "mine.pt")
    log = open(tmp_path / "policy.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "minivla", "policy", "--config", robot_file, "--checkpoint",
                                "mine.pt"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                               env=bringup.ros_environment())
    output = lambda: Path(log.name).read_text()  # noqa: E731
    arm = RunningArm()
    try:
        assert wait_until(arm, lambda: len(arm.twists) >= 5 and arm.grippers, 120, arm.publish), output()
        assert {twist.header.frame_id for twist in arm.twists} == {"myarm_base"}  # the file's robot.action_frame
        assert all(-1.0 <= gripper.data <= 1.0 for gripper in arm.grippers)
        text = output()
        assert f"loaded {(tmp_path / 'mine.pt').resolve()}" in text, text
        assert "was trained on push-v3 (Meta-World's Sawyer arm), but bag2data.task is myarm" in text, text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, output()
        assert "stopping the policy node" in output() and "killed" not in output(), output()
        spin_for(arm, 1.0, arm.publish)  # what was on its way when the node stopped
        seen = len(arm.twists)
        spin_for(arm, 1.0, arm.publish)
        assert len(arm.twists) == seen  # the node is gone: no command follows
        last = arm.twists[-1].twist  # and the last one it sent held the arm: a robot keeps its last twist
        assert (last.linear.x, last.linear.y, last.linear.z) == (0.0, 0.0, 0.0), last
        assert "inactive: holding" in output(), output()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        arm.destroy_node()


def test_minivla_policy_checks_the_robot_file_before_it_starts_anything(tmp_path):
    robot_file = tmp_path / "myarm.yaml"
    robot_file.write_text(yaml.safe_dump({"robot": {**ROBOT_FILE["robot"], "action_type": "Twist"}}))
    result = minivla("policy", "--config", robot_file)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: robot.action_type must be one of"), result.stderr
    assert "ROS_DOMAIN_ID=" not in result.stdout  # nothing started
    robot_file.write_text(yaml.safe_dump(ROBOT_FILE))
    result = minivla("policy", "--config", robot_file, "--checkpoint", tmp_path / "nowhere.pt")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: checkpoint {tmp_path / 'nowhere.pt'} does not exist"
    assert "ROS_DOMAIN_ID=" not in result.stdout


def test_minivla_params_writes_a_robot_file_as_a_parameter_file_rcl_reads(tmp_path):
    """rcl refuses a minivla file ("Cannot have a value before ros__parameters"); `minivla params` writes its
    sections as the parameter file of each node that declares them, which rcl reads, every value typed."""
    robot_file = tmp_path / "myarm.yaml"
    robot_file.write_text(yaml.safe_dump(ROBOT_FILE))
    result = minivla("params", "--config", robot_file)
    assert result.returncode == 0, result.stderr
    params_file = tmp_path / "ros_params.yaml"
    params_file.write_text(result.stdout)
    written = yaml.safe_load(result.stdout)
    assert set(written) == {"policy_node", "expert_node", "teleop"}  # the nodes that declare policy_node or robot
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(params_file)], context=context)
    try:
        node = rclpy.create_node("policy_node", context=context, automatically_declare_parameters_from_overrides=True)
        expected = Config.from_dict(ROBOT_FILE)
        assert node.get_parameter("robot.action_topic").value == "/myarm/cmd_vel"
        assert list(node.get_parameter("robot.camera_topics").value) == ["/myarm/camera"]
        assert node.get_parameter("robot.velocity_scale").value == expected.robot.velocity_scale  # a double
        assert node.get_parameter("policy_node.control_rate").type_ == Parameter.Type.DOUBLE
        assert node.get_parameter("policy_node.instruction").value == "push the puck to the goal"
        assert not node.has_parameter("robot.action_limits")  # empty: the node declares it empty itself
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_installed_node_launchers_run_the_python_they_were_installed_for(tmp_path):
    """lib/minivla_ros/policy_node (what `ros2 run` and the launch files start) began `#!/usr/bin/env python3`: with the
    venv not activated that is the system's Python, where minivla_ros does not import. A PATH without the venv's bin/
    must not matter: the node starts and checks its parameters (a bad one ends it with one error line, status 2)."""
    launchers = Path(sys.prefix) / "lib" / "minivla_ros"  # scripts/setup_ros.sh installs into the venv
    assert sorted(path.name for path in launchers.iterdir()) == sorted(graph.NODES)
    for launcher in launchers.iterdir():
        interpreter = Path(launcher.read_text().splitlines()[0][2:])
        assert interpreter.parent == Path(sys.prefix) / "bin" and interpreter.is_file(), (launcher, interpreter)
    env = {**bringup.ros_environment(), "PATH": "/usr/bin:/bin"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run([launchers / "policy_node", "--ros-args", "-p", "policy_node.timing:=sideways"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert "No module named" not in output, output
    assert result.returncode == 2 and "error: PolicyNode: policy_node.timing must be one of" in output, output


def test_a_graph_whose_checkpoint_was_not_trained_on_its_task_is_warned_about():
    """`ros2 launch ... config:=config/fetch.yaml` without `checkpoint:=` ran the push-v3 policy on the Fetch scene
    without a word; launch/sim_policy.launch.py and `minivla run` now warn, naming both (graph.sim_policy_warning)."""
    fetch = str(ROOT / "config" / "fetch.yaml")
    warning = graph.sim_policy_warning(graph.PARAMS_FILE, graph.sim_policy_overrides({}, fetch), cwd=ROOT)
    assert warning.startswith("warning: checkpoint checkpoints/push_v3.pt was trained on push-v3 (Meta-World's Sawyer "
                              "arm), but env.task is fetch-push (gymnasium-robotics' Fetch arm)"), warning
    matched = graph.sim_policy_overrides({"checkpoint": "checkpoints/fetch_push.pt"}, fetch)
    assert graph.sim_policy_warning(graph.PARAMS_FILE, matched, cwd=ROOT) is None
    assert graph.sim_policy_warning(graph.PARAMS_FILE, graph.sim_policy_overrides({}), cwd=ROOT) is None
    several = graph.sim_policy_overrides({"checkpoint": "checkpoints/multitask.pt", "task": "reach-v3"})
    assert graph.sim_policy_warning(graph.PARAMS_FILE, several, cwd=ROOT) is None  # one of the tasks it learnt
    unreadable = graph.sim_policy_overrides({"checkpoint": "nowhere.pt", "task": "fetch-push"})
    assert graph.sim_policy_warning(graph.PARAMS_FILE, unreadable, cwd=ROOT) is None  # the node says why
    launch = (ROOT / "launch" / "sim_policy.launch.py").read_text()
    assert "graph.sim_policy_warning(params_file, overrides)" in launch and "LogInfo(msg=warning)" in launch
    assert "graph.sim_policy_warning(" in (ROOT / "minivla_ros" / "bringup.py").read_text()
