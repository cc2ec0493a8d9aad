"""The ROS graph with real nodes: instruction QoS, closed loop, and bad input.

The policy node and the simulator bridge run as separate processes (as with `ros2 launch`);
the test process plays the other side with its own rclpy node.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, String

from minivla_core.checkpoint import read_checkpoint
from minivla_ros import bringup, graph, qos
from minivla_ros.conversions import image_to_msg, state_to_msg
from minivla_ros.interfaces import joint_positions, position_from_pose
from minivla_ros.msg import ActionCommand, PolicyStatus, RobotState
from ros_helpers import spin_for, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "push_v3.pt"
SIZE = read_checkpoint(CHECKPOINT)["env"]["image_size"]  # the camera image size the bundled policy expects


class FakeRobot(Node):
    """Publishes camera images and states like the bridge would; records what the policy sends."""

    def __init__(self, cameras=("corner2",)):
        super().__init__("test_robot")
        self.image_pubs = [self.create_publisher(Image, graph.image_topic(camera, i == 0), qos.profile(graph.IMAGE))
                           for i, camera in enumerate(cameras)]
        self.state_pub = self.create_publisher(RobotState, graph.STATE.name, qos.profile(graph.STATE))
        self.instruction_pub = self.create_publisher(String, graph.INSTRUCTION.name, 10)  # ros2 topic pub's QoS
        self.commands: list[ActionCommand] = []
        self.status: PolicyStatus | None = None
        self.create_subscription(ActionCommand, graph.ACTION.name, self.commands.append, qos.profile(graph.ACTION))
        self.create_subscription(PolicyStatus, graph.POLICY_STATUS.name, self.on_status,
                                 qos.profile(graph.POLICY_STATUS))
        self.images = np.zeros((len(cameras), SIZE, SIZE, 3), np.uint8)  # one per camera
        self.state = np.zeros(4, np.float32)  # hand x, y, z and gripper: the proprio protocol
        self.observation = "proprio"
        self.encoding = "rgb8"
        self.sending = True

    def on_status(self, msg):
        self.status = msg

    def publish(self):
        if not self.sending:
            return
        stamp = self.get_clock().now().to_msg()
        for publisher, picture in zip(self.image_pubs, self.images):
            image = image_to_msg(picture, stamp)
            image.encoding = self.encoding
            publisher.publish(image)
        self.state_pub.publish(state_to_msg(self.state, stamp, self.observation))


def clock_ns(node) -> int:
    return node.get_clock().now().nanoseconds


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def answers_since(robot: FakeRobot, since: int) -> list[ActionCommand]:
    """The commands computed from observations stamped from `since` on (a command names the observation its chunk
    was sampled from: those before `since` may come from a chunk sampled before a change)."""
    return [c for c in robot.commands if stamp_ns(c.observation_stamp) >= since]


@pytest.fixture
def policy_process(node_process):
    """Start a policy node process with the bundled checkpoint: start(**overrides) -> (process, log)."""
    return lambda **overrides: node_process("policy_node",
                                            **{"policy_node.checkpoint": str(CHECKPOINT), **overrides})


def test_default_qos_instruction_reaches_policy_and_it_acts(policy_process):
    process, output = policy_process()
    robot = FakeRobot()
    try:
        assert wait_until(robot, lambda: robot.status is not None, 60, robot.publish), output()
        assert not robot.status.active and "no instruction" in robot.status.reason
        assert robot.commands == []
        robot.instruction_pub.publish(String(data="push the puck to the goal"))
        assert wait_until(robot, lambda: len(robot.commands) >= 10, 60, robot.publish), output()
        command = robot.commands[-1]
        assert len(command.action) == 4 and all(-1.0 <= a <= 1.0 for a in command.action)
        assert command.step_in_chunk < 4
        assert "instruction: 'push the puck to the goal'" in output()
        # A word the policy never saw is reported, not fatal.
        robot.instruction_pub.publish(String(data="push the purple puck to the goal"))
        assert wait_until(robot, lambda: "read as <unk>: purple" in output(), 60, robot.publish), output()
        since = clock_ns(robot)
        assert wait_until(robot, lambda: answers_since(robot, since), 60, robot.publish), output()  # still acting
        assert process.poll() is None
    finally:
        robot.destroy_node()


def test_bad_inputs_get_a_log_line_and_no_action(policy_process):
    process, output = policy_process(**{"policy_node.instruction": "push the puck to the goal"})
    robot = FakeRobot()
    try:
        assert wait_until(robot, lambda: len(robot.commands) > 0, 60, robot.publish), output()

        def acting_stops_after(change, log_text, undo, refused=True):
            """Bad input from change() on, good again from undo(): once the node has noticed, it sends nothing until
            the input is good again. A `refused` part (dropped, so the inputs go stale) is noticed when the status
            says the node stopped; until then it may still act on the fresh parts and the last good one, as free
            timing does. A part taken whole is noticed at the first action it spoils (the log line). Judged by stamps,
            not by how long anything took: how many commands were in flight when the input went bad depends on
            scheduling."""
            change()
            bad_since = clock_ns(robot)  # every observation stamped from here on is bad
            assert wait_until(robot, lambda: log_text in output(), 60, robot.publish), output()
            noticed = clock_ns(robot)  # after the node wrote the log line
            if refused:
                assert wait_until(robot, lambda: robot.status is not None and not robot.status.active
                                  and stamp_ns(robot.status.header.stamp) > bad_since, 60, robot.publish), output()
                noticed = stamp_ns(robot.status.header.stamp)
            undo()
            good_since = clock_ns(robot)
            assert wait_until(robot, lambda: answers_since(robot, good_since), 60, robot.publish), output()
            assert not [c for c in robot.commands if noticed < stamp_ns(c.header.stamp) < good_since], \
                f"still acting after: {log_text}"

        acting_stops_after(lambda: setattr(robot, "encoding", "yuv422"),
                           "dropping corner2 camera image: image encoding 'yuv422' is not supported",
                           lambda: setattr(robot, "encoding", "rgb8"))
        acting_stops_after(lambda: robot.state.__setitem__(2, np.nan),
                           "dropping robot state: state contains NaN",
                           lambda: robot.state.__setitem__(2, 0.0))
        acting_stops_after(lambda: robot.state.__setitem__(2, 1e20),  # finite, absurd: it used to give NaN commands
                           "standard deviations from the training states",
                           lambda: robot.state.__setitem__(2, 0.0), refused=False)  # taken: no action passes
        acting_stops_after(lambda: setattr(robot, "state", np.zeros(12, np.float32)),
                           "state has 12 numbers, expected 4",
                           lambda: setattr(robot, "state", np.zeros(4, np.float32)))
        # Meta-World's privileged state, where the checkpoint was trained on proprio: refused by name
        acting_stops_after(lambda: (setattr(robot, "state", np.zeros(39, np.float32)),
                                    setattr(robot, "observation", "full")),
                           "robot state is of the full (privileged state) protocol, expected proprio",
                           lambda: (setattr(robot, "state", np.zeros(4, np.float32)),
                                    setattr(robot, "observation", "proprio")))
        acting_stops_after(lambda: setattr(robot, "sending", False), "camera image is stale",
                           lambda: setattr(robot, "sending", True))
        # A camera of another size and encoding is read (its centre square, resized): acting goes on.
        robot.images, robot.encoding = np.zeros((1, 150, 200, 3), np.uint8), "bgr8"
        since = clock_ns(robot)
        assert wait_until(robot, lambda: answers_since(robot, since), 60, robot.publish), output()
        robot.images, robot.encoding = np.zeros((1, SIZE, SIZE, 3), np.uint8), "rgb8"

        for text, message in (("", "is empty"), ("x" * 10240, "ignoring instruction of 10240 characters")):
            robot.instruction_pub.publish(String(data=text))
            assert wait_until(robot, lambda: message in output(), 60, robot.publish), output()
        since = clock_ns(robot)
        assert wait_until(robot, lambda: answers_since(robot, since), 60, robot.publish)  # the old one is in force
        assert robot.status.instruction == "push the puck to the goal"
        assert all(np.all(np.isfinite(c.action)) and np.all(np.abs(c.action) <= 1.0) for c in robot.commands)
        assert process.poll() is None
    finally:
        robot.destroy_node()


def test_missing_checkpoint_is_reported_and_node_keeps_running(policy_process, tmp_path):
    process, output = policy_process(**{"policy_node.checkpoint": str(tmp_path / "nope.pt"),
                                        "policy_node.instruction": "push the puck to the goal"})
    robot = FakeRobot()
    try:
        assert wait_until(robot, lambda: robot.status is not None, 60, robot.publish), output()
        assert not robot.status.active and "does not exist" in robot.status.reason
        spin_for(robot, 1.0, robot.publish)
        assert robot.commands == [] and process.poll() is None
        assert "no policy loaded: checkpoint" in output()
    finally:
        robot.destroy_node()


def test_a_robot_interface_that_does_not_fit_the_checkpoint_is_named(policy_process):
    process, output = policy_process(**{"robot.state_type": "PoseAndJoints", "robot.state_joints": ["wrist", "gripper"],
                                        "policy_node.instruction": "push the puck to the goal"})
    robot = FakeRobot()
    try:
        assert wait_until(robot, lambda: robot.status is not None, 60, robot.publish), output()
        assert "robot interface does not fit" in robot.status.reason, robot.status.reason
        assert "state of 5 numbers" in robot.status.reason and "the policy expects 4" in robot.status.reason
        spin_for(robot, 1.0, robot.publish)
        assert robot.commands == [] and process.poll() is None
    finally:
        robot.destroy_node()


def test_closed_loop_through_the_graph():
    """Bridge + policy processes, real MuJoCo, the bundled checkpoint, each on its own clock (free timing): the
    policy's commands drive both episodes to their end. How often it succeeds, and in how many commands, depends on
    scheduling in free timing: bench/bench_graph.py measures it; test_lockstep.py checks the outcome step for step."""
    result = bringup.run(episodes=2, task="push-v3", instruction="push the puck to the goal")
    assert [e["episode"] for e in result.episodes] == [0, 1]
    assert all(e["steps"] >= 1 for e in result.episodes), result.episodes  # an episode's clock starts with a command
    status = result.policy_status
    assert status["active"] and status["ticks"] >= 2 and status["control_rate"] == 20.0
    assert status["achieved_rate"] > 0 and status["sampling_latency_p50_ms"] > 0  # measured (figures: bench/)


def test_closed_loop_through_standard_messages_only():
    """The same graph with the policy node on the robot interface a real arm offers: hand pose (PoseStamped) and
    gripper (JointState) in, TwistStamped and a Float64 gripper command out; nothing of ours in the loop."""
    standard = {"robot.state_type": "PoseAndJoints", "robot.action_type": "TwistStamped"}
    result = bringup.run(episodes=3, task="push-v3", instruction="push the puck to the goal", overrides=standard)
    assert len(result.episodes) == 3 and all(e["steps"] >= 1 for e in result.episodes), result.episodes
    assert result.policy_status["active"] and result.policy_status["ticks"] >= 3


def test_bridge_switches_task_on_a_parameter_change(ros, tmp_path):
    """`ros2 param set /sim_bridge env.task reach-v3`, done through the same SetParameters service."""
    import rclpy
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    from minivla_ros.msg import EpisodeStatus

    log = open(tmp_path / "bridge.log", "w+")
    bridge = subprocess.Popen(bringup.node_command("sim_bridge", bringup.DEFAULT_PARAMS, {}),
                              stdout=log, stderr=subprocess.STDOUT, env=bringup.ros_environment(), cwd=ROOT)
    node = rclpy.create_node("test_param_client")
    statuses = []
    node.create_subscription(EpisodeStatus, graph.EPISODE_STATUS.name, statuses.append,
                             qos.profile(graph.EPISODE_STATUS))
    client = node.create_client(SetParameters, "/sim_bridge/set_parameters")

    def set_task(name):
        request = SetParameters.Request(parameters=[Parameter(name="env.task", value=ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value=name))])
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=10)
        return future.result().results[0]

    try:
        assert client.wait_for_service(timeout_sec=60)
        assert wait_until(node, lambda: any(s.task == "push-v3" for s in statuses), 30)
        refused = set_task("open-the-fridge-v3")
        assert not refused.successful and "unknown task 'open-the-fridge-v3'" in refused.reason
        assert set_task("reach-v3").successful
        assert wait_until(node, lambda: statuses and statuses[-1].task == "reach-v3", 30), Path(log.name).read_text()
        assert any(s.done and s.task == "push-v3" for s in statuses)  # the push episode was closed
        assert "switching from push-v3 to reach-v3" in Path(log.name).read_text()
    finally:
        node.destroy_node()
        bringup.stop_processes([bridge])
        log.close()


def test_multitask_policy_switches_behaviour_when_a_new_instruction_arrives(policy_process):
    """Same observation (a push-v3 scene), the bundled multi-task checkpoint: publishing a new
    instruction mid-run changes the actions the node sends, and one for a task the scene lacks
    stops the arm."""
    from minivla_core.config import EnvConfig
    from minivla_core.envs.metaworld_env import MetaWorldEnv
    from minivla_core.evaluate import env_config_for

    checkpoint_env = read_checkpoint(ROOT / "checkpoints" / "multitask.pt")["env"]
    with MetaWorldEnv(env_config_for(checkpoint_env, EnvConfig(seed=1000), "push-v3")) as env:
        obs = env.reset(0)
    process, output = policy_process(**{"policy_node.checkpoint": str(ROOT / "checkpoints" / "multitask.pt"),
                                        "policy_node.instruction": "push the puck to the goal"})
    robot = FakeRobot([checkpoint_env["camera"], *checkpoint_env["extra_cameras"]])
    robot.images, robot.state = obs.images, obs.state
    try:
        def actions_after(instruction):
            """12 actions computed under `instruction`: from observations stamped after the node said it has it
            (commands in flight then, or left in a chunk sampled before, are the old instruction's)."""
            robot.instruction_pub.publish(String(data=instruction))
            assert wait_until(robot, lambda: f"instruction: {instruction!r}" in output(), 60, robot.publish)
            since = clock_ns(robot)
            assert wait_until(robot, lambda: len(answers_since(robot, since)) >= 12, 60, robot.publish), output()
            return np.array([c.action for c in answers_since(robot, since)[:12]])

        assert wait_until(robot, lambda: len(robot.commands) >= 12, 60, robot.publish), output()
        pushing = np.array([c.action for c in robot.commands[-12:]])
        reaching = actions_after("reach the goal position")
        assert np.linalg.norm(pushing.mean(0) - reaching.mean(0)) > 0.25, (pushing.mean(0), reaching.mean(0))
        # a task this scene does not have: the arm holds still instead of doing the scene's task
        holding = actions_after("open the drawer")
        assert np.abs(holding[:, :3]).mean() < 0.1 < np.abs(reaching[:, :3]).mean(), (holding, reaching)
        assert process.poll() is None
    finally:
        robot.destroy_node()


def test_bridge_publishes_one_image_topic_per_camera(node_process):
    """env.extra_cameras: camera/<name>/image_raw next to camera/image_raw, each frame with its state's stamp."""
    import rclpy

    process, output = node_process("sim_bridge", **{"env.extra_cameras": "[gripperPOV]", "env.image_size": 32})
    node = rclpy.create_node("test_cameras")
    scene, gripper = [], []
    node.create_subscription(Image, "camera/image_raw", scene.append, qos.SENSOR_QOS)  # the names users type
    node.create_subscription(Image, "camera/gripperPOV/image_raw", gripper.append, qos.SENSOR_QOS)
    try:
        assert wait_until(node, lambda: len(scene) > 3 and len(gripper) > 3, 60), output()
        assert "corner2 and gripperPOV camera" in output()
        stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in scene}
        assert any((m.header.stamp.sec, m.header.stamp.nanosec) in stamps for m in gripper)
        assert (gripper[-1].width, gripper[-1].height) == (32, 32) and bytes(gripper[-1].data) != bytes(scene[-1].data)
    finally:
        node.destroy_node()


def test_the_bridge_is_a_robot_in_standard_messages(node_process):
    """Hand pose and joint states out; a TwistStamped (m/s) and a gripper command in, as for a real arm."""
    import rclpy

    process, output = node_process("sim_bridge", **{"env.image_size": 32})
    node = rclpy.create_node("test_standard_robot")
    poses, joints = [], []
    node.create_subscription(PoseStamped, "ee_pose", poses.append, qos.SENSOR_QOS)
    node.create_subscription(JointState, "joint_states", joints.append, qos.SENSOR_QOS)
    twist_pub = node.create_publisher(TwistStamped, "cmd_vel", 10)
    gripper_pub = node.create_publisher(Float64, "gripper_command", 10)

    def command(gripper: float, x: float = 0.0, y: float = 0.0, frame: str = "world"):
        def send():
            twist = TwistStamped()
            twist.header.frame_id = frame
            twist.twist.linear.x, twist.twist.linear.y = x, y
            gripper_pub.publish(Float64(data=gripper))
            twist_pub.publish(twist)
        return send

    def hand():
        return position_from_pose(poses[-1])

    def gripper_opening():
        return joint_positions(joints[-1], ["gripper"])[0]

    try:
        assert wait_until(node, lambda: len(poses) > 3 and len(joints) > 3, 60), output()
        assert list(joints[-1].name) == ["right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5",
                                         "right_j6", "gripper"]
        start, opening = hand(), gripper_opening()
        # 0.1 m/s along x, gripper closing: the hand goes along x only, and the gripper closes (how far in a given
        # time depends on how many steps the bridge took, which depends on scheduling: not asserted)
        assert wait_until(node, lambda: hand()[0] - start[0] > 0.03 and gripper_opening() < opening - 0.1, 60,
                          command(1.0, x=0.1)), output()
        moved = hand() - start
        assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, moved
        # 1 m/s along -y: five times what the arm does (0.2 m/s at 20 steps/s): refused, so the hand never moves
        # along y (the x commands before it may still be taken: the bridge takes them in order)
        y, seen = hand()[1], len(poses)
        assert wait_until(node, lambda: "refusing cmd_vel" in output() and len(poses) > seen + 10, 60,
                          command(1.0, y=-1.0)), output()
        assert max(abs(position_from_pose(pose)[1] - y) for pose in poses[seen:]) < 0.005
        assert "at most 0.2 m/s" in output()
        # 0.1 m/s along -y in a tool frame, in no frame, in base_link: this robot knows no transforms, so each is
        # refused and named, and the hand never moves along y (issue 23: they used to move it in world axes)
        for frame in ("tool0", "", "base_link"):
            y, seen = hand()[1], len(poses)
            assert wait_until(node, lambda: f"refusing cmd_vel in frame {frame!r}" in output()
                              and len(poses) > seen + 10, 60, command(1.0, y=-0.1, frame=frame)), output()
            assert max(abs(position_from_pose(pose)[1] - y) for pose in poses[seen:]) < 0.005, frame
    finally:
        node.destroy_node()


def test_running_nodes_publish_and_subscribe_what_the_graph_contract_says(node_process, policy_process):
    """Every topic of minivla_ros/graph.py, as the running bridge and policy node offer it: name, type, QoS."""
    import rclpy
    from rclpy.qos import ReliabilityPolicy

    _, bridge_output = node_process("sim_bridge", **{"env.image_size": SIZE})
    _, policy_output = policy_process()
    node = rclpy.create_node("test_contract")
    reliability = {"sensor": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
    expected = {topic: "sim_bridge" if topic.publishers.startswith("sim_bridge") else "policy_node"
                for topic in graph.TOPICS if topic.publishers.startswith(("sim_bridge", "policy_node"))
                and "interface standard" not in topic.publishers  # those: test_fetch_robot.py
                and "timing timed" not in topic.publishers  # that: test_timed_graph.py
                and "publish_plan" not in topic.publishers}  # off by default; test_planned_path.py turns it on
    try:
        def offered(topic, node_name):
            return [info for info in node.get_publishers_info_by_topic(topic.absolute) if info.node_name == node_name]

        assert wait_until(node, lambda: all(offered(t, n) for t, n in expected.items()), 60), \
            (bridge_output(), policy_output())
        for topic, node_name in expected.items():
            (info,) = offered(topic, node_name)
            assert info.topic_type == topic.type, topic
            assert info.qos_profile.reliability == reliability[topic.qos], topic
        listens = {graph.ACTION: "sim_bridge", graph.CMD_VEL: "sim_bridge", graph.GRIPPER_COMMAND: "sim_bridge",
                   graph.IMAGE: "policy_node", graph.STATE: "policy_node", graph.INSTRUCTION: "policy_node",
                   graph.EPISODE_STATUS: "policy_node"}

        def subscribed(topic, node_name):
            return any(info.node_name == node_name and info.topic_type == topic.type
                       for info in node.get_subscriptions_info_by_topic(topic.absolute))

        assert wait_until(node, lambda: all(subscribed(t, n) for t, n in listens.items()), 30)
        assert graph.RESET_SERVICE in {name.lstrip("/") for name, _ in node.get_service_names_and_types()}
    finally:
        node.destroy_node()
