"""The second robot (Fetch pushing a block, gymnasium-robotics), end to end through standard messages only, as
README "Bring your own robot" walks through it with config/fetch.yaml: expert demonstrations recorded through ROS
as a bag, the bag converted with the file's robot section, and the bundled Fetch policy driving the arm."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from minivla_core.config import load_config
from minivla_core.data.dataset import load_episodes
from minivla_ros import bringup

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "config" / "fetch.yaml"
CHECKPOINT = ROOT / "checkpoints" / "fetch_push.pt"


def minivla(*args, timeout=300):
    process = subprocess.run([sys.executable, "-m", "minivla_core.cli", *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=timeout, env=bringup.ros_environment())
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process.stdout


@pytest.fixture(scope="module")
def fetch_bag(tmp_path_factory):
    """Three expert episodes of the Fetch arm, recorded through ROS in standard messages."""
    bag = tmp_path_factory.mktemp("fetch") / "bag"
    output = minivla("record", "--config", str(FETCH), "--episodes", "3", "--out", str(bag))
    steps = [int(line.split()[4]) for line in output.splitlines() if line.startswith("episode ") and "success" in line]
    return bag, steps


def test_fetch_demonstrations_are_standard_messages_only(fetch_bag):
    bag, steps = fetch_bag
    assert len(steps) == 3, steps  # every episode of the scripted pusher succeeded
    with AnyReader([bag]) as reader:
        types = {connection.topic: connection.msgtype for connection in reader.connections}
        counts = {connection.topic: connection.msgcount for connection in reader.connections}
    wanted = ["/" + name for name in load_config(FETCH).recorder.topics]
    assert sorted(types) == sorted(wanted)
    assert not [t for t in types.values() if t.startswith("minivla_ros/")], types
    assert types["/cmd_vel"] == "geometry_msgs/msg/TwistStamped" and types["/episode"] == "std_msgs/msg/Header"
    assert counts["/episode"] == 3 and counts["/cmd_vel"] >= sum(steps)


def test_fetch_bag_converts_with_the_robot_section_and_splits_episodes(fetch_bag, tmp_path):
    bag, steps = fetch_bag
    out = tmp_path / "data"
    minivla("bag2data", str(bag), "--config", str(FETCH), "--out", str(out))
    _, episodes = load_episodes(out)
    kept = [s for s in steps if s >= 2]  # a layout can start with the block at the goal: success in 1 step
    assert len(episodes) == len(kept)  # one per /episode message, none merged
    for episode, bridge_steps in zip(episodes, kept):
        assert episode.images.shape[1:] == (1, 96, 96, 3)
        # the resampled episode has the bridge's steps, plus the final observation the last command still covers
        assert bridge_steps <= len(episode.actions) <= bridge_steps + 2
        assert np.all(np.abs(episode.actions) <= 1.0) and np.all(episode.actions[:, 3] == -1.0)  # pushes closed
        assert 0.0 <= episode.states[:, 3].min() and episode.states[:, 3].max() <= 1.0  # gripper opening
        assert episode.task == "fetch-push" and episode.instruction == "push the block to the red goal"
    # Each action is the command that moved the arm from its observation to the next: the hand's motion follows
    # the action of the same step far better than the one before or after.
    actions = [e.actions[1:-2, :3] for e in episodes if len(e.actions) > 6]
    motion = [np.diff(e.states[:-1, :3], axis=0)[1:] for e in episodes if len(e.actions) > 6]

    def agreement(lag):
        pairs = [(a[1 + lag:len(a) - 1 + lag], m[1:-1]) for a, m in zip(actions, motion)]
        a, m = (np.concatenate(column).ravel() for column in zip(*pairs))
        return np.corrcoef(a, m)[0, 1]

    assert agreement(0) > 0.8 and agreement(0) > agreement(-1) + 0.02 and agreement(0) > agreement(1) + 0.02


def test_the_fetch_policy_drives_the_arm_through_standard_messages_only():
    """The bundled Fetch checkpoint through the graph: it moves the arm, and every topic the bridge (the robot)
    publishes or takes is of a standard type. (How often it succeeds is a figure: bench/bench_robot.py.)"""
    from geometry_msgs.msg import PoseStamped

    from minivla_ros import qos

    config = load_config(FETCH)
    overrides = {f"{section}.{name}": value for section in ("env", "bridge", "robot")
                 for name, value in vars(getattr(config, section)).items() if value != []}
    bridge, hand = {}, []

    def observe(processes, monitor):  # while the policy acts: what the bridge offers and takes, where the hand is
        if not bridge:
            monitor.create_subscription(PoseStamped, "/ee_pose", lambda msg: hand.append(msg.pose.position.y),
                                        qos.SENSOR_QOS)
        bridge["publishes"] = dict(monitor.get_publisher_names_and_types_by_node("sim_bridge", "/"))
        bridge["takes"] = dict(monitor.get_subscriber_names_and_types_by_node("sim_bridge", "/"))

    result = bringup.run(episodes=2, task="fetch-push", instruction="push the block to the red goal",
                         overrides={**overrides, "policy_node.checkpoint": str(CHECKPOINT)}, observe=observe)
    assert len(result.episodes) == 2 and result.policy_status["active"] and result.policy_status["ticks"] > 10
    assert max(hand) - min(hand) > 0.02, hand  # the policy's TwistStamped commands moved the hand sideways
    assert "/cmd_vel" in bridge["takes"] and "/camera/image_raw" in bridge["publishes"], bridge
    types = [t for types in (*bridge["publishes"].values(), *bridge["takes"].values()) for t in types]
    assert not [t for t in types if t.startswith("minivla_ros/")], bridge
