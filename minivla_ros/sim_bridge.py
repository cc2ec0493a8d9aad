"""Simulator bridge: Meta-World (through minivla_core's env wrapper) as if it were a robot.

At `bridge.step_rate` it applies the newest action command, steps the simulation, and publishes
the camera image (one topic per camera: camera/image_raw, camera/<name>/image_raw for each of
`env.extra_cameras`), the robot state (of the `env.observation` protocol, "proprio" by default: hand
position and gripper) and the episode status. The simulator's full state goes to its own topic,
sim/privileged_state, for the scripted expert only: a policy sees the scene through the camera. Rules:
- Each command is applied at most once. When no new command has arrived since the last step,
  the arm holds still (zero motion, gripper as last commanded) instead of replaying the old one.
- An episode's clock starts with its first command: until then the bridge keeps publishing the
  initial observation without stepping, so no episode times out while no policy is running.
  With `bridge.min_subscribers` > 0 it publishes nothing at all until that many subscriptions to
  robot_state and sim/privileged_state exist (a recording then starts with the first observation).
- An episode ends on success, on time-out (env.max_episode_steps) or on the `reset_episode`
  service; the next one starts at once. Layouts follow (env.seed, episode) as in `minivla eval`.
- The task can change while running: `ros2 param set /sim_bridge env.task drawer-open-v3` ends
  the current episode and continues in the new task (an unknown task name is refused).

Parameters: the fields of EnvConfig (`env.*`) and BridgeConfig (`bridge.*`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from minivla_core.config import PRIVILEGED, BridgeConfig, EnvConfig, observation_label
from minivla_core.envs.metaworld_env import MetaWorldEnv, check_task
from minivla_core.errors import TaskError
from minivla_ros import qos
from minivla_ros.conversions import action_from_msg, image_to_msg, state_to_msg
from minivla_ros.msg import ActionCommand, EpisodeStatus, RobotState
from minivla_ros.params import declare_section
from minivla_ros.spin import run_node


class SimBridgeNode(Node):
    def __init__(self):
        super().__init__("sim_bridge")
        self.env_config = declare_section(self, "env", EnvConfig(), changeable=("env.task",))
        self.config = declare_section(self, "bridge", BridgeConfig(),
                                      changeable=("bridge.command_timeout", "bridge.episodes"))
        self.env = MetaWorldEnv(self.env_config)
        self.image_pubs = [self.create_publisher(Image, qos.image_topic(camera, i == 0), qos.SENSOR_QOS)
                           for i, camera in enumerate(self.env.cameras)]
        self.state_pub = self.create_publisher(RobotState, qos.STATE_TOPIC, qos.SENSOR_QOS)
        self.privileged_pub = self.create_publisher(RobotState, qos.PRIVILEGED_STATE_TOPIC, qos.SENSOR_QOS)
        self.status_pub = self.create_publisher(EpisodeStatus, qos.EPISODE_STATUS_TOPIC, qos.RELIABLE_QOS)
        self.create_subscription(ActionCommand, qos.ACTION_TOPIC, self.on_command, qos.RELIABLE_QOS)
        self.create_service(Trigger, qos.RESET_SERVICE, self.on_reset_request)
        self.timer = self.create_timer(1.0 / self.config.step_rate, self.step)
        self.pending_task: str | None = None
        self.add_on_set_parameters_callback(self.on_set_parameters)

        self.newest_command: np.ndarray | None = None
        self.last_command_time = time.monotonic()
        self.gripper = -1.0
        self.holding_reported = False
        self.episodes_done = 0
        self.ready_since = None
        self.obs_stamp = None  # stamp of the newest published observation
        self.start_episode(0)
        self.get_logger().info(f"simulating {self.env.task} ({' and '.join(self.env.cameras)} camera, "
                               f"{self.env_config.image_size}px, {observation_label(self.env_config.observation)} "
                               f"robot state) at {self.config.step_rate} Hz, seed {self.env_config.seed}")

    def start_episode(self, episode: int) -> None:
        self.obs = self.env.reset(episode)
        self.episode_return = 0.0
        self.started = False
        self.newest_command = None
        self.gripper = -1.0

    def on_command(self, msg: ActionCommand) -> None:
        try:
            self.newest_command = action_from_msg(msg)
        except ValueError as exc:
            self.get_logger().error(f"refusing action command: {exc}", throttle_duration_sec=1.0)
            return
        self.last_command_time = time.monotonic()

    def on_set_parameters(self, parameters):
        """The parameters that can change while running (the rest are read-only):
        `ros2 param set /sim_bridge env.task drawer-open-v3` switches task at the next step;
        bridge.command_timeout and bridge.episodes take effect at once."""
        changes = {}
        for parameter in parameters:
            if parameter.name == "env.task":
                try:
                    check_task(parameter.value)
                except TaskError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            elif parameter.name == "bridge.command_timeout" and not parameter.value > 0:
                return SetParametersResult(successful=False, reason="bridge.command_timeout must be > 0 seconds")
            elif parameter.name == "bridge.episodes" and parameter.value < 0:
                return SetParametersResult(successful=False, reason="bridge.episodes must be >= 0 (0 = no limit)")
            changes[parameter.name] = parameter.value
        if "env.task" in changes:
            self.pending_task = changes["env.task"]
        bridge = {name.split(".", 1)[1]: value for name, value in changes.items() if name.startswith("bridge.")}
        self.config = dataclasses.replace(self.config, **bridge)
        return SetParametersResult(successful=True)

    def switch_task(self, task: str) -> None:
        """End the current episode, rebuild the environment for `task`, start its next episode."""
        self.publish_status(done=True, success=False, stamp=self.obs_stamp)
        self.get_logger().info(f"switching from {self.env.task} to {task}")
        episode = self.env.episode + 1
        self.env.close()
        self.env_config = dataclasses.replace(self.env_config, task=task)
        self.env = MetaWorldEnv(self.env_config)
        self.episodes_done += 1
        self.start_episode(episode)
        self.publish_observation()

    def on_reset_request(self, request, response):
        self.finish_episode(success=False, reason="reset requested")
        response.success, response.message = True, f"started episode {self.env.episode}"
        return response

    def step(self) -> None:
        if self.config.episodes and self.episodes_done >= self.config.episodes:
            return
        if self.pending_task is not None:
            task, self.pending_task = self.pending_task, None
            if task != self.env.task:
                self.switch_task(task)
                return
        command, self.newest_command = self.newest_command, None
        if self.episodes_done == 0 and not self.started and not self.subscribers_ready():
            return  # e.g. a recorder is still connecting: publish nothing, start nothing yet
        if command is None:
            if not self.started:  # waiting for this episode's first command
                self.publish_observation()
                return
            idle = time.monotonic() - self.last_command_time
            if idle > self.config.command_timeout and not self.holding_reported:
                self.get_logger().warning(f"no action command for {idle:.2f} s: holding still")
                self.holding_reported = True
            command = np.array([0.0, 0.0, 0.0, self.gripper], dtype=np.float32)
        else:
            self.started, self.holding_reported = True, False
            self.gripper = float(command[3])
        self.obs = self.env.step(command)
        self.episode_return += self.obs.reward
        self.publish_observation()
        if self.obs.success or self.env.done:
            self.finish_episode(self.obs.success, "success" if self.obs.success else "time-out")

    def subscribers_ready(self) -> bool:
        """True once bridge.min_subscribers subscriptions to the two state topics have existed for a second."""
        if self.config.min_subscribers <= 0:
            return True
        subscriptions = self.state_pub.get_subscription_count() + self.privileged_pub.get_subscription_count()
        if subscriptions < self.config.min_subscribers:
            self.ready_since = None
            return False
        self.ready_since = self.ready_since or time.monotonic()
        return time.monotonic() - self.ready_since > 1.0

    def finish_episode(self, success: bool, reason: str) -> None:
        # The closing status describes the last observation, so it carries that observation's stamp.
        self.publish_status(done=True, success=success, stamp=self.obs_stamp)
        self.get_logger().info(f"episode {self.env.episode} ended ({reason}) after {self.env.step_count} steps")
        self.episodes_done += 1
        self.start_episode(self.env.episode + 1)
        if not (self.config.episodes and self.episodes_done >= self.config.episodes):
            self.publish_observation()  # after the last episode (bridge.episodes), the bridge goes quiet

    def publish_observation(self) -> None:
        """Images, state and status of one observation share one stamp (recordings rely on it)."""
        stamp = self.obs_stamp = self.get_clock().now().to_msg()
        for publisher, image in zip(self.image_pubs, self.obs.images):
            publisher.publish(image_to_msg(image, stamp))
        self.state_pub.publish(state_to_msg(self.obs.state, stamp, self.env_config.observation))
        self.privileged_pub.publish(state_to_msg(self.obs.privileged, stamp, PRIVILEGED))
        self.publish_status(done=False, success=self.obs.success, stamp=stamp)

    def publish_status(self, done: bool, success: bool, stamp=None) -> None:
        msg = EpisodeStatus()
        msg.header.stamp = stamp or self.get_clock().now().to_msg()
        msg.task = self.env.task
        msg.episode = self.env.episode
        msg.step = self.env.step_count
        msg.success = bool(success)
        msg.done = done
        msg.episode_return = float(self.episode_return)
        self.status_pub.publish(msg)

    def destroy_node(self) -> None:
        self.env.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(SimBridgeNode, args)


if __name__ == "__main__":
    main()
