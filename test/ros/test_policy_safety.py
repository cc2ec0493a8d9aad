"""The policy node as robot integrators expect it: a managed (lifecycle) node, a dry run that commands
nothing, action limits that are never exceeded, a pause service and /diagnostics."""

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from std_srvs.srv import SetBool

from ros_helpers import spin_for, wait_until
from test_graph import CHECKPOINT, FakeRobot

INSTRUCTION = {"policy_node.instruction": "push the puck to the goal"}


@pytest.fixture
def policy_process(node_process):
    return lambda **overrides: node_process("policy_node", **{"policy_node.checkpoint": str(CHECKPOINT),
                                                              **INSTRUCTION, **overrides})


def call(node, client, request, timeout=30.0):
    assert client.wait_for_service(timeout_sec=timeout), client.srv_name
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    assert future.done(), client.srv_name
    return future.result()


def test_lifecycle_configure_activate_deactivate_cleanup(policy_process):
    process, output = policy_process(**{"policy_node.autostart": False})
    robot = FakeRobot()
    change = robot.create_client(ChangeState, "/policy_node/change_state")

    def transition(id):
        assert call(robot, change, ChangeState.Request(transition=Transition(id=id))).success, output()

    def commands_flow(expected: bool) -> bool:
        """Whether commands come: waited for up to 10 s where they should (a loaded machine is slow), watched for
        0.8 s where they should not."""
        count = len(robot.commands)
        if expected:
            return wait_until(robot, lambda: len(robot.commands) > count, 10, robot.publish)
        spin_for(robot, 0.8, robot.publish)
        return len(robot.commands) > count

    try:
        assert wait_until(robot, lambda: robot.status is not None, 60, robot.publish), output()
        assert "unconfigured" in robot.status.reason and not commands_flow(False)
        transition(Transition.TRANSITION_CONFIGURE)
        assert wait_until(robot, lambda: "not active" in robot.status.reason, 10, robot.publish), output()
        assert not commands_flow(False)
        transition(Transition.TRANSITION_ACTIVATE)
        assert wait_until(robot, lambda: robot.status.active, 10, robot.publish), output()
        assert commands_flow(True)
        transition(Transition.TRANSITION_DEACTIVATE)
        spin_for(robot, 0.3, robot.publish)
        assert not commands_flow(False) and "inactive: holding" in output()
        transition(Transition.TRANSITION_CLEANUP)
        assert wait_until(robot, lambda: "unconfigured" in robot.status.reason, 10, robot.publish), output()
        transition(Transition.TRANSITION_CONFIGURE)  # and back: the checkpoint loads again
        transition(Transition.TRANSITION_ACTIVATE)
        assert wait_until(robot, lambda: robot.status.active, 20, robot.publish), output()
        assert commands_flow(True) and process.poll() is None
    finally:
        robot.destroy_node()


def test_a_transition_not_valid_from_the_current_state_is_refused_and_the_node_stays_where_it_was(policy_process):
    """Every invalid (state, transition) pair of the lifecycle answers success=false (rclpy would raise RCLError in
    the service callback and end the node); cleanup while active deactivates (holds) first, then cleans up."""
    from lifecycle_msgs.srv import GetState

    process, output = policy_process(**{"policy_node.autostart": False})
    robot = FakeRobot()
    change = robot.create_client(ChangeState, "/policy_node/change_state")
    get_state = robot.create_client(GetState, "/policy_node/get_state")
    T = Transition
    invalid = {"unconfigured": [T.TRANSITION_ACTIVATE, T.TRANSITION_DEACTIVATE, T.TRANSITION_CLEANUP],
               "inactive": [T.TRANSITION_CONFIGURE, T.TRANSITION_DEACTIVATE],
               "active": [T.TRANSITION_CONFIGURE, T.TRANSITION_ACTIVATE]}
    to_next = {"unconfigured": T.TRANSITION_CONFIGURE, "inactive": T.TRANSITION_ACTIVATE}

    def state() -> str:
        return call(robot, get_state, GetState.Request()).current_state.label

    try:
        for current, transitions in invalid.items():
            assert state() == current, output()
            for transition in transitions:
                assert not call(robot, change, ChangeState.Request(transition=Transition(id=transition))).success
                assert state() == current and process.poll() is None, output()
            by_label = ChangeState.Request(transition=Transition(label="deactivate" if current != "active" else
                                                                 "activate"))
            assert not call(robot, change, by_label).success and state() == current
            if current in to_next:
                assert call(robot, change, ChangeState.Request(transition=Transition(id=to_next[current]))).success
        assert "is not valid from state 'unconfigured'" in output()
        assert call(robot, change, ChangeState.Request(transition=Transition(id=T.TRANSITION_CLEANUP))).success
        assert state() == "unconfigured" and process.poll() is None
        log = output()
        assert log.index("deactivating first") < log.index("inactive: holding")
    finally:
        robot.destroy_node()


def test_configure_fails_with_the_reason_when_the_checkpoint_cannot_load(policy_process, tmp_path):
    process, output = policy_process(**{"policy_node.autostart": False,
                                        "policy_node.checkpoint": str(tmp_path / "missing.pt")})
    robot = FakeRobot()
    change = robot.create_client(ChangeState, "/policy_node/change_state")
    try:
        result = call(robot, change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        assert not result.success
        assert wait_until(robot, lambda: robot.status is not None and "does not exist" in robot.status.reason, 10,
                          robot.publish), output()
        assert process.poll() is None
    finally:
        robot.destroy_node()


def test_dry_run_computes_and_logs_but_commands_nothing(policy_process):
    process, output = policy_process(**{"policy_node.dry_run": True})
    robot = FakeRobot()
    try:
        assert wait_until(robot, lambda: "dry run, not sent" in output(), 60, robot.publish), output()
        spin_for(robot, 1.0, robot.publish)
        assert robot.commands == []
        assert "dry run" in robot.status.reason and not robot.status.active
        assert robot.status.sampling_latency_p50_ms > 0  # it did compute
    finally:
        robot.destroy_node()


def test_a_command_beyond_the_limits_is_never_published(policy_process):
    """The bundled policy pushes at up to full speed; limits of 0.05 per axis make most of its actions illegal."""
    limits = [0.05, 0.05, 0.05, 1.0]
    process, output = policy_process(**{"robot.action_limits": limits})
    robot = FakeRobot()
    try:
        assert wait_until(robot, lambda: "beyond robot.action_limits" in output(), 60, robot.publish), output()
        spin_for(robot, 2.0, robot.publish)
        assert all(np.all(np.abs(c.action) <= np.array(limits) + 1e-6) for c in robot.commands), robot.commands
    finally:
        robot.destroy_node()


def test_pause_service_and_diagnostics(policy_process):
    process, output = policy_process()
    robot = FakeRobot()
    diagnostics = []
    robot.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    pause = robot.create_client(SetBool, "/policy_node/pause")
    try:
        assert wait_until(robot, lambda: len(robot.commands) > 5, 60, robot.publish), output()
        assert wait_until(robot, lambda: any(d.status[0].level == DiagnosticStatus.OK for d in diagnostics), 5,
                          robot.publish)
        assert call(robot, pause, SetBool.Request(data=True)).message == "paused"
        spin_for(robot, 0.3, robot.publish)
        count = len(robot.commands)
        assert wait_until(robot, lambda: "paused" in robot.status.reason, 5, robot.publish)
        assert len(robot.commands) == count
        assert wait_until(robot, lambda: "paused" in diagnostics[-1].status[0].message, 5, robot.publish)
        report = diagnostics[-1].status[0]
        assert report.level == DiagnosticStatus.WARN and "paused" in report.message
        assert {kv.key for kv in report.values} >= {"achieved_rate", "sampling_latency_p50_ms", "dropped_ticks"}
        call(robot, pause, SetBool.Request(data=False))
        assert wait_until(robot, lambda: len(robot.commands) > count, 5, robot.publish)
    finally:
        robot.destroy_node()


def test_namespaces_and_remapping_apply_to_every_robot_topic(ros, tmp_path):
    """`--ros-args -r __ns:=/arm1 -r cmd_vel:=servo/twist`: the node reads /arm1/camera/image_raw, /arm1/ee_pose,
    /arm1/joint_states and /arm1/instruction, and commands /arm1/servo/twist and /arm1/gripper_command."""
    import subprocess
    from pathlib import Path

    from geometry_msgs.msg import PoseStamped, TwistStamped
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64, String

    from minivla_ros import bringup, qos
    from minivla_ros.conversions import image_to_msg, joint_state_to_msg, pose_to_msg
    from test_graph import SIZE

    overrides = {"policy_node.checkpoint": str(CHECKPOINT), "robot.state_type": "PoseAndJoints",
                 "robot.action_type": "TwistStamped"}
    command = bringup.node_command("policy_node", bringup.DEFAULT_PARAMS, overrides)
    command += ["-r", "__ns:=/arm1", "-r", "cmd_vel:=servo/twist"]
    log = open(tmp_path / "policy.log", "w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=bringup.ros_environment(),
                               cwd=bringup.ROOT)
    node = rclpy.create_node("test_arm1")
    twists, grippers = [], []
    node.create_subscription(TwistStamped, "/arm1/servo/twist", twists.append, qos.RELIABLE_QOS)
    node.create_subscription(Float64, "/arm1/gripper_command", grippers.append, qos.RELIABLE_QOS)
    image_pub = node.create_publisher(Image, "/arm1/camera/image_raw", qos.SENSOR_QOS)
    pose_pub = node.create_publisher(PoseStamped, "/arm1/ee_pose", qos.SENSOR_QOS)
    joints_pub = node.create_publisher(JointState, "/arm1/joint_states", qos.SENSOR_QOS)
    instruction_pub = node.create_publisher(String, "/arm1/instruction", 10)

    def publish():
        stamp = node.get_clock().now().to_msg()
        image_pub.publish(image_to_msg(np.zeros((SIZE, SIZE, 3), np.uint8), stamp))
        pose_pub.publish(pose_to_msg([0.0, 0.6, 0.2], stamp))
        joints_pub.publish(joint_state_to_msg(["gripper"], [0.5], stamp))
        instruction_pub.publish(String(data="push the puck to the goal"))

    try:
        assert wait_until(node, lambda: twists and grippers, 90, publish), Path(log.name).read_text()[-2000:]
        assert node.count_publishers("/cmd_vel") == 0 and node.count_subscribers("/ee_pose") == 0
    finally:
        node.destroy_node()
        bringup.stop_processes([process])
        log.close()


def test_inputs_that_stop_make_a_velocity_commanded_robot_hold(policy_process):
    """Issue 23 [4]: when the camera stops mid-episode the node stops acting; a robot that keeps its last twist
    would keep moving, so the node sends one zero twist (the gripper as it was) and nothing after it."""
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from minivla_ros import qos
    from minivla_ros.conversions import image_to_msg, joint_state_to_msg, pose_to_msg
    from test_graph import SIZE

    process, output = policy_process(**{"robot.state_type": "PoseAndJoints", "robot.action_type": "TwistStamped"})
    node = rclpy.create_node("test_stale_hold")
    twists = []
    node.create_subscription(TwistStamped, "cmd_vel", twists.append, qos.RELIABLE_QOS)
    image_pub = node.create_publisher(Image, "camera/image_raw", qos.SENSOR_QOS)
    pose_pub = node.create_publisher(PoseStamped, "ee_pose", qos.SENSOR_QOS)
    joints_pub = node.create_publisher(JointState, "joint_states", qos.SENSOR_QOS)
    instruction_pub = node.create_publisher(String, "instruction", 10)
    camera = {"on": True}

    def publish():
        stamp = node.get_clock().now().to_msg()
        if camera["on"]:
            image_pub.publish(image_to_msg(np.zeros((SIZE, SIZE, 3), np.uint8), stamp))
        pose_pub.publish(pose_to_msg([0.0, 0.6, 0.2], stamp))
        joints_pub.publish(joint_state_to_msg(["gripper"], [0.5], stamp))
        instruction_pub.publish(String(data="push the puck to the goal"))

    def moving(twist) -> bool:
        return any(v != 0.0 for v in (twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z))

    try:
        assert wait_until(node, lambda: any(moving(t) for t in twists), 90, publish), output()
        camera["on"] = False
        assert wait_until(node, lambda: "camera image is stale" in output() and not moving(twists[-1]), 30,
                          publish), output()
        count = len(twists)
        spin_for(node, 1.0, publish)  # pose and joints still come: nothing moves the robot again
        assert not any(moving(t) for t in twists[count - 1:]), [t.twist.linear for t in twists[count - 1:]]
        assert process.poll() is None
    finally:
        node.destroy_node()
