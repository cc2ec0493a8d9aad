"""A robot with no gripper, end to end, as docs/robot.md walks through it: a planar two-joint arm
(test/planar_arm.py) with its own topics and frame, whose bags another program wrote (the rosbags library), goes
through `minivla bag2data` and `minivla train` with its one YAML file (config/planar_arm.yaml, robot.gripper_topic
empty), and the policy node, started alone from the same file (`minivla policy --config`) against a node playing the
arm over real DDS, commands it with 3-number TwistStamped commands in the arm's frame, publishes no gripper command at
all, and holds it with a twist of zeros when its camera stops. (How often it reaches the dot is not asserted: a few
epochs of a tiny model are no policy to measure, and bench/ measures.)"""

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, JointState
from std_msgs.msg import Header

from minivla_core.checkpoint import read_checkpoint
from minivla_core.config import ModelConfig
from minivla_core.data.dataset import load_episodes
from minivla_ros import bringup, graph, qos
from minivla_ros.msg import PolicyStatus
from minivla_test_utils import tiny_model_config
from planar_arm import CAMERA_RATE, FRAME, JOINT_ORDER, PHYSICS_RATE, ROOT, PlanarArm, robot_config, write_bags
from ros_helpers import wait_until

IMAGE_SIZE = 32  # the test's; config/planar_arm.yaml's is 64


def minivla(*args, timeout=300) -> str:
    process = subprocess.run([sys.executable, "-m", "minivla", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=timeout)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process.stdout


def twist_numbers(msg: TwistStamped) -> list[float]:
    """linear x, y, z, angular x, y, z"""
    linear, angular = msg.twist.linear, msg.twist.angular
    return [linear.x, linear.y, linear.z, angular.x, angular.y, angular.z]


def tiny_model_settings() -> list[str]:
    """--set model.FIELD=VALUE for each field where the tests' tiny model differs from the default."""
    default, tiny = ModelConfig(), tiny_model_config()
    return [arg for f in dataclasses.fields(ModelConfig) if getattr(tiny, f.name) != getattr(default, f.name)
            for arg in ("--set", f"model.{f.name}={getattr(tiny, f.name)}")]


class ArmDriver(Node):
    """The planar arm's driver: its camera (jpeg), tip pose and joints on its own topics, an episode marker at the
    start; each TwistStamped on its command topic moves the simulated arm. It records every command it gets."""

    def __init__(self, robot):
        super().__init__("planar_arm_driver")
        self.arm, self.robot = PlanarArm(seed=7), robot
        self.camera_pub = self.create_publisher(CompressedImage, robot.camera_topics[0], qos.SENSOR_QOS)
        self.pose_pub = self.create_publisher(PoseStamped, robot.state_pose_topic, qos.SENSOR_QOS)
        self.joints_pub = self.create_publisher(JointState, robot.state_joint_topic, qos.SENSOR_QOS)
        self.episode_pub = self.create_publisher(Header, robot.episode_topic, qos.LATCHED_QOS)
        self.status: PolicyStatus | None = None
        self.camera_on = True
        self.twists: list[TwistStamped] = []
        self.create_subscription(TwistStamped, robot.action_topic, self.on_twist, qos.RELIABLE_QOS)
        self.create_subscription(PolicyStatus, graph.POLICY_STATUS.name, self.on_status,
                                 qos.profile(graph.POLICY_STATUS))
        self.episode_pub.publish(Header(stamp=self.get_clock().now().to_msg()))
        self.create_timer(1.0 / PHYSICS_RATE, self.step)
        self.create_timer(1.0 / CAMERA_RATE, self.send_image)

    def on_twist(self, msg: TwistStamped) -> None:
        self.twists.append(msg)
        linear = msg.twist.linear
        self.arm.velocity = np.array([linear.x, linear.y, linear.z])

    def on_status(self, msg: PolicyStatus) -> None:
        self.status = msg

    def step(self) -> None:
        self.arm.step()
        stamp = self.get_clock().now().to_msg()
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, FRAME
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in self.arm.tip())
        pose.pose.orientation.w = 1.0
        self.pose_pub.publish(pose)
        joints = JointState(name=list(JOINT_ORDER), position=self.arm.joint_positions())
        joints.header.stamp = stamp
        self.joints_pub.publish(joints)

    def send_image(self) -> None:
        if not self.camera_on:
            return
        ok, jpeg = cv2.imencode(".jpg", self.arm.image()[..., ::-1])
        msg = CompressedImage(format="jpeg", data=jpeg.tobytes())
        msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), "planar_camera"
        self.camera_pub.publish(msg)


def test_a_robot_with_no_gripper_from_its_own_bags_to_its_policy_node(tmp_path, ros):
    config_file = str(ROOT / "config" / "planar_arm.yaml")
    robot = robot_config().robot
    bags = write_bags(tmp_path / "bags", bags=2, episodes=5)

    # bags -> dataset: 3-number actions, the twist's x, y, z in action units; z is 0 throughout (a planar arm)
    data = tmp_path / "data"
    output = minivla("bag2data", *map(str, bags), "--config", config_file, "--out", str(data), "--image-size",
                     str(IMAGE_SIZE))
    meta, episodes = load_episodes(data)
    assert len(episodes) == 10, output
    assert (meta["action_dim"], meta["state_dim"], meta["observation"]) == (3, 5, "robot")
    actions = np.concatenate([e.actions for e in episodes])
    assert actions.shape[1] == 3 and np.all(actions[:, 2] == 0.0)
    assert np.abs(actions[:, :2]).max() > 0.5  # the expert's 0.15 m/s at 0.2 m/s an action unit: 0.75
    assert all(e.instruction == "reach the red dot" and e.task == "planar-reach" for e in episodes)
    index = [json.loads(line) for line in (data / "episodes.jsonl").read_text().splitlines()]
    assert all(entry["success"] is True for entry in index)  # each bag's std_msgs/Bool results

    # a short training run: the checkpoint's action is 3 numbers
    run = tmp_path / "run"
    minivla("train", "--config", config_file, "--dataset", str(data), "--out", str(run),
            "--epochs", "3", "--set", f"env.image_size={IMAGE_SIZE}", "--set", "train.batch_size=32",
            "--set", "train.warmup_steps=2", "--set", "train.threads=2", *tiny_model_settings())
    payload = read_checkpoint(run / "best.pt")
    assert (payload["action_dim"], payload["state_dim"]) == (3, 5)

    # the policy node alone, from the same file (`minivla policy`), against the arm's driver
    log_file = open(tmp_path / "policy.log", "w+")
    policy = subprocess.Popen([sys.executable, "-m", "minivla", "policy", "--config", config_file, "--checkpoint",
                               str(run / "best.pt")], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                              env=bringup.ros_environment())
    log = lambda: Path(log_file.name).read_text()  # noqa: E731
    driver = ArmDriver(robot)
    try:
        assert wait_until(driver, lambda: len(driver.twists) >= 20, 120), log()
        assert driver.status is not None and driver.status.active, log()
        for twist in driver.twists:
            x, y, z, *angular = twist_numbers(twist)
            assert twist.header.frame_id == FRAME and angular == [0.0, 0.0, 0.0]
            assert z == 0.0  # the action's third number, pinned to the demonstrations' 0 (no gripper number in it)
            assert np.hypot(x, y) <= robot.max_speed + 1e-9
        assert any(twist_numbers(twist)[:2] != [0.0, 0.0] for twist in driver.twists)
        published = dict(driver.get_publisher_names_and_types_by_node("policy_node", "/"))
        assert published[robot.action_topic] == ["geometry_msgs/msg/TwistStamped"], published
        assert not [topic for topic, types in published.items()
                    if "gripper" in topic or "std_msgs/msg/Float64" in types], published
        # the camera stops: the node holds the arm with a twist of zeros in every number (no gripper number kept)
        driver.camera_on = False
        assert wait_until(driver, lambda: driver.status is not None and "stale" in driver.status.reason
                          and twist_numbers(driver.twists[-1]) == [0.0] * 6, 60), log()
        assert "was trained on" not in log()  # the checkpoint's task is the file's (bag2data.task)
        policy.send_signal(signal.SIGINT)
        assert policy.wait(timeout=60) == 0, log()
    finally:
        if policy.poll() is None:
            policy.kill()
            policy.wait()
        log_file.close()
        driver.destroy_node()
