"""Expert node: Meta-World's scripted expert driving the simulator through ROS.

It answers every privileged state (sim/privileged_state: the scripted expert needs object poses
and the goal, which the policy never gets) with one action command on the topic the policy uses,
so a running graph produces demonstrations (record them with `minivla record` or
`ros2 bag record`). The expert follows the task named in episode_status; each command's
observation_stamp is the stamp of the state it answers, which pairs actions with observations
exactly in a recording. Parameters: the fields of ExpertNodeConfig (`expert.*`).
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node

from minivla_core.config import FULL_STATE_DIM, PRIVILEGED, ExpertNodeConfig
from minivla_core.actions import ACTION_DIM
from minivla_core.envs.metaworld_env import make_expert
from minivla_core.errors import TaskError
from minivla_ros import graph, qos
from minivla_ros.conversions import state_from_msg
from minivla_ros.msg import ActionCommand, EpisodeStatus, RobotState
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node


class ExpertNode(Node):
    def __init__(self):
        super().__init__("expert_node")
        self.config = declare_section(self, "expert", ExpertNodeConfig())
        self.task = None
        self.expert = None
        self.set_task(self.config.task)
        self.episode = None
        self.chunk = 0
        self.command_pub = self.create_publisher(ActionCommand, graph.ACTION.name, qos.profile(graph.ACTION))
        self.create_subscription(RobotState, graph.PRIVILEGED_STATE.name, self.on_state,
                                 qos.profile(graph.PRIVILEGED_STATE))
        self.create_subscription(EpisodeStatus, graph.EPISODE_STATUS.name, self.on_episode_status,
                                 qos.profile(graph.EPISODE_STATUS))

    def set_task(self, task: str) -> None:
        if task == self.task:
            return
        try:
            self.expert, self.task = make_expert(task), task
            self.get_logger().info(f"scripted expert for {task}")
        except TaskError as exc:
            self.get_logger().error(f"no expert: {exc}")

    def on_episode_status(self, msg: EpisodeStatus) -> None:
        self.set_task(msg.task)
        if msg.episode != self.episode:
            self.episode, self.chunk = msg.episode, 0

    def on_state(self, msg: RobotState) -> None:
        if self.expert is None:
            return
        try:
            state = state_from_msg(msg, FULL_STATE_DIM, PRIVILEGED)
        except ValueError as exc:
            self.get_logger().error(f"dropping robot state: {exc}", throttle_duration_sec=1.0)
            return
        action = np.clip(self.expert.get_action(state), -1.0, 1.0)
        command = ActionCommand()
        command.header.stamp = self.get_clock().now().to_msg()
        command.action = [float(a) for a in action[:ACTION_DIM]]
        command.chunk = self.chunk  # the expert plans one step at a time: one chunk per action
        command.step_in_chunk = 0
        command.observation_stamp = msg.header.stamp
        self.chunk += 1
        self.command_pub.publish(command)


def main(args=None) -> None:
    run_node(ExpertNode, args)


if __name__ == "__main__":
    main()
