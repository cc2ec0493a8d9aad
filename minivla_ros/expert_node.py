"""Expert node: a simulated task's scripted expert driving the simulator through ROS.

It answers every privileged state the bridge publishes (the scripted expert needs object poses and the
goal, which the policy never gets) with one command, through the same robot interface as the policy
node (the `robot.*` parameters), so a running graph produces demonstrations that hold the very commands
a policy will send (record them with `minivla record` or `ros2 bag record`):
- Of this package's messages (robot.action_type ActionCommand, the default): it reads
  sim/privileged_state (minivla_ros/RobotState) and publishes action_command; each command's
  observation_stamp is the stamp of the state it answers, which pairs actions with observations
  exactly in a recording. The task follows episode_status.
- In standard messages (any other robot.action_type, with a bridge of bridge.interface standard): it
  reads sim/scene_state (std_msgs/Float64MultiArray) and publishes e.g. a TwistStamped on cmd_vel and
  the gripper on gripper_command. The task is `expert.task`. With no robot.gripper_topic a TwistStamped
  robot has no gripper: the expert's gripper number is dropped (the simulated gripper stays open), and
  its demonstrations hold 3-number actions.

Parameters: the fields of ExpertNodeConfig (`expert.*`) and RobotConfig (`robot.*`).
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float64, Float64MultiArray

from minivla_core.actions import ACTION_DIM
from minivla_core.config import FULL_STATE_DIM, PRIVILEGED, ExpertNodeConfig, RobotConfig
from minivla_core.envs import make_sim_expert
from minivla_core.errors import TaskError
from minivla_ros import graph, qos
from minivla_ros.conversions import COMMAND_TYPES, command_msgs, state_from_msg
from minivla_ros.interfaces import action_size, check_length, finite
from minivla_ros.msg import ActionCommand, EpisodeStatus, RobotState
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node

COMMAND_PERIOD = 0.05  # seconds: when a JointTrajectory command's point falls due (one step at 20 steps/s)


class ExpertNode(Node):
    def __init__(self):
        super().__init__("expert_node")
        self.config = declare_section(self, "expert", ExpertNodeConfig())
        self.robot = declare_section(self, "robot", RobotConfig())
        # how many of the expert's numbers it sends: all 4, or 3 to a TwistStamped robot with no gripper
        self.action_dim = min(action_size(self.robot) or ACTION_DIM, ACTION_DIM)
        self.task = None
        self.expert = None
        self.set_task(self.config.task)
        self.episode = None
        self.chunk = 0
        if self.robot.action_type == "ActionCommand":
            self.command_pubs = [self.create_publisher(ActionCommand, graph.ACTION.name, qos.profile(graph.ACTION))]
            self.create_subscription(RobotState, graph.PRIVILEGED_STATE.name, self.on_state,
                                     qos.profile(graph.PRIVILEGED_STATE))
            self.create_subscription(EpisodeStatus, graph.EPISODE_STATUS.name, self.on_episode_status,
                                     qos.profile(graph.EPISODE_STATUS))
        else:
            self.command_pubs = [self.create_publisher(COMMAND_TYPES[self.robot.action_type], self.robot.action_topic,
                                                       qos.RELIABLE_QOS)]
            if self.robot.gripper_topic:
                self.command_pubs.append(self.create_publisher(Float64, self.robot.gripper_topic, qos.RELIABLE_QOS))
            self.create_subscription(Float64MultiArray, graph.SCENE_STATE.name, self.on_scene_state,
                                     qos.profile(graph.SCENE_STATE))

    def set_task(self, task: str) -> None:
        if task == self.task:
            return
        try:
            self.expert, self.task = make_sim_expert(task), task
            self.get_logger().info(f"scripted expert for {task}")
        except TaskError as exc:
            self.get_logger().error(f"no expert: {exc}")

    def on_episode_status(self, msg: EpisodeStatus) -> None:
        self.set_task(msg.task)
        if msg.episode != self.episode:
            self.episode, self.chunk = msg.episode, 0

    def expert_action(self, state: np.ndarray) -> np.ndarray:
        return np.clip(self.expert.get_action(state), -1.0, 1.0)[:self.action_dim]

    def on_state(self, msg: RobotState) -> None:
        if self.expert is None:
            return
        try:
            state = state_from_msg(msg, FULL_STATE_DIM, PRIVILEGED)
        except ValueError as exc:
            self.get_logger().error(f"dropping robot state: {exc}", throttle_duration_sec=1.0)
            return
        command = ActionCommand()
        command.header.stamp = self.get_clock().now().to_msg()
        command.action = [float(a) for a in self.expert_action(state)]
        command.chunk = self.chunk  # the expert plans one step at a time: one chunk per action
        command.step_in_chunk = 0
        command.observation_stamp = msg.header.stamp
        self.chunk += 1
        self.command_pubs[0].publish(command)

    def on_scene_state(self, msg: Float64MultiArray) -> None:
        if self.expert is None:
            return
        try:
            state = finite(check_length(msg.data, "scene state"), "scene state").astype(np.float32)
            action = self.expert_action(state)
        except (ValueError, IndexError) as exc:
            self.get_logger().error(f"dropping scene state: {exc}", throttle_duration_sec=1.0)
            return
        messages = command_msgs(action, self.robot, self.get_clock().now().to_msg(), COMMAND_PERIOD)
        for publisher, message in zip(self.command_pubs[::-1], messages[::-1]):  # the gripper first, as the policy
            publisher.publish(message)


def main(args=None) -> None:
    run_node(ExpertNode, args)


if __name__ == "__main__":
    main()
