"""policy_node.publish_plan: the simulator and the policy node over DDS, and a plain rclpy node that sees the planned
chunk as RViz would, a visualization_msgs/MarkerArray on policy_node/planned_path, checked against the robot state
and the commands the same graph carries."""

import numpy as np
import pytest
from rclpy.node import Node

from minivla_core.actions import HAND_STEP
from minivla_core.checkpoint import read_checkpoint
from minivla_ros import graph, qos
from minivla_ros.msg import ActionCommand, RobotState
from ros_helpers import wait_until
from test_graph import CHECKPOINT

visualization_msgs = pytest.importorskip("visualization_msgs.msg", reason="policy_node.publish_plan needs "
                                         "visualization_msgs (pip: ros-jazzy-visualization-msgs), not installed")


def stamp_key(stamp) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


class PlanViewer(Node):
    """What a viewer subscribes to, plus the states and commands of the same stamps to check the plan against."""

    def __init__(self):
        super().__init__("test_plan_viewer")
        self.states: dict[tuple[int, int], np.ndarray] = {}
        self.commands: dict[tuple[int, int], np.ndarray] = {}
        self.plans: list = []
        self.create_subscription(RobotState, graph.STATE.name,
                                 lambda msg: self.states.update({stamp_key(msg.header.stamp): np.array(msg.state)}),
                                 qos.profile(graph.STATE))
        self.create_subscription(ActionCommand, graph.ACTION.name, lambda msg: self.commands.update(
            {stamp_key(msg.observation_stamp): np.array(msg.action)}), qos.profile(graph.ACTION))
        self.create_subscription(visualization_msgs.MarkerArray, "/" + graph.PLANNED_PATH.name, self.plans.append,
                                 qos.profile(graph.PLANNED_PATH))

    def checkable_plan(self):
        """The first plan whose observation's state and first command this node has seen."""
        for plan in self.plans:
            stamp = stamp_key(plan.markers[0].header.stamp)
            if stamp in self.states and stamp in self.commands:
                return plan, self.states[stamp], self.commands[stamp]
        return None


def start_graph_publishing_plans(node_process, timing: str):
    """The simulator and the policy node in `timing`, the plan published: a function returning both nodes' logs."""
    _, bridge_log = node_process("sim_bridge", **{"bridge.timing": timing})
    _, policy_log = node_process("policy_node", **{
        "policy_node.timing": timing, "policy_node.checkpoint": str(CHECKPOINT),
        "policy_node.instruction": "push the puck to the goal", "policy_node.publish_plan": True})
    return lambda: policy_log() + bridge_log()


def test_the_planned_chunk_is_published_as_the_hands_path_from_the_observed_hand(node_process):
    model = read_checkpoint(CHECKPOINT)["model_config"]
    logs = start_graph_publishing_plans(node_process, "lockstep")
    viewer = PlanViewer()
    try:
        assert wait_until(viewer, lambda: viewer.checkable_plan() is not None, 120), logs()
        plan, state, first_action = viewer.checkable_plan()
        markers = {marker.ns: marker for marker in plan.markers}
        planned, executed = markers["planned"], markers["executed"]
        for marker in planned, executed:
            assert marker.type == visualization_msgs.Marker.LINE_STRIP
            assert marker.header.frame_id == "world"  # robot.action_frame: the simulator's frame
        points = np.array([[p.x, p.y, p.z] for p in planned.points])
        assert len(points) == model["horizon"] + 1
        np.testing.assert_allclose(points[0], state[:3], atol=1e-6)  # from the hand the policy saw
        np.testing.assert_allclose(points[1] - points[0], first_action[:3] * HAND_STEP, atol=1e-6)  # its 1st command
        assert len(executed.points) == model["n_action_steps"] + 1
        assert "publishing each planned chunk on policy_node/planned_path" in logs()
    finally:
        viewer.destroy_node()


def test_timed_chunks_are_published_as_paths_from_the_hand_they_were_sampled_at(node_process):
    """In timed execution a chunk arrives while the robot moves on (sampled ahead, on the node's sampling thread):
    its path still starts at the hand of the observation it was sampled from, stamped with that observation."""
    model = read_checkpoint(CHECKPOINT)["model_config"]
    logs = start_graph_publishing_plans(node_process, "timed")
    viewer = PlanViewer()
    try:
        def matched():
            return [plan for plan in viewer.plans if stamp_key(plan.markers[0].header.stamp) in viewer.states]

        assert wait_until(viewer, lambda: len(matched()) >= 3, 120), logs()
        for plan in matched():
            planned = {marker.ns: marker for marker in plan.markers}["planned"]
            assert planned.header.frame_id == "world"
            points = np.array([[p.x, p.y, p.z] for p in planned.points])
            assert len(points) >= model["horizon"] + 1  # (a chunk stretched for a slow sampler is longer)
            np.testing.assert_allclose(points[0], viewer.states[stamp_key(planned.header.stamp)][:3], atol=1e-6)
    finally:
        viewer.destroy_node()
