"""Policy node: the diffusion policy driving the arm at a fixed control rate.

It keeps the newest camera image, robot state and instruction. On a timer at
`policy.control_rate` it publishes one action command, taken from the current action chunk; a
new chunk is sampled (DDIM, `policy.inference_steps` steps) when the executed part
(`policy.n_action_steps` actions) is used up. It publishes nothing while it has no policy, no
instruction, or stale inputs, and says why on `policy_status` (once a second) and in the log.

Parameters: the fields of PolicyNodeConfig (`policy.*`).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from minivla_core.checkpoint import load_policy
from minivla_core.config import PolicyNodeConfig, observation_label
from minivla_core.errors import MiniVLAError
from minivla_core.model.policy import PolicyRunner
from minivla_ros import qos
from minivla_ros.conversions import image_from_msg, state_from_msg
from minivla_ros.msg import ActionCommand, EpisodeStatus, PolicyStatus, RobotState
from minivla_ros.params import declare_section, resolve_path
from minivla_ros.spin import run_node

MAX_INSTRUCTION_CHARS = 1000


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy_node")
        self.config = declare_section(self, "policy", PolicyNodeConfig())
        torch.set_num_threads(max(1, self.config.threads))
        self.runner: PolicyRunner | None = None
        self.problem = "no instruction received yet"
        self.load(self.config.checkpoint)

        self.image = self.state = None
        self.image_stamp = self.chunk_stamp = None
        self.image_time = self.state_time = -float("inf")
        self.episode = None
        self.period = 1.0 / self.config.control_rate
        self.tick_times: deque[float] = deque(maxlen=int(10 * self.config.control_rate))
        self.latencies: deque[float] = deque(maxlen=200)
        self.ticks = self.dropped_ticks = 0

        self.command_pub = self.create_publisher(ActionCommand, qos.ACTION_TOPIC, qos.RELIABLE_QOS)
        self.status_pub = self.create_publisher(PolicyStatus, qos.POLICY_STATUS_TOPIC, qos.RELIABLE_QOS)
        self.create_subscription(Image, qos.IMAGE_TOPIC, self.on_image, qos.SENSOR_QOS)
        self.create_subscription(RobotState, qos.STATE_TOPIC, self.on_state, qos.SENSOR_QOS)
        self.create_subscription(String, qos.INSTRUCTION_TOPIC, self.on_instruction, qos.RELIABLE_QOS)
        self.create_subscription(EpisodeStatus, qos.EPISODE_STATUS_TOPIC, self.on_episode_status, qos.RELIABLE_QOS)
        self.create_timer(self.period, self.tick)
        self.create_timer(1.0, self.publish_status)
        if self.config.instruction:
            self.set_instruction(self.config.instruction)

    # --- inputs -------------------------------------------------------------------------------
    def load(self, checkpoint: str) -> None:
        path = resolve_path(checkpoint)
        try:
            self.policy, payload = load_policy(path)
        except MiniVLAError as exc:
            self.policy, self.problem = None, f"no policy loaded: {exc}"
            self.get_logger().error(self.problem)
            return
        self.image_size, self.state_dim = payload["env"]["image_size"], payload["state_dim"]
        self.observation = payload["env"]["observation"]
        self.get_logger().info(f"loaded {path} (trained on {payload['env']['task']}, "
                               f"{self.image_size}px {payload['env']['camera']} images, "
                               f"{observation_label(self.observation)} robot state)")

    def on_image(self, msg: Image) -> None:
        if self.policy is None:
            return
        try:
            self.image = image_from_msg(msg, self.image_size)
        except ValueError as exc:
            self.get_logger().error(f"dropping camera image: {exc}", throttle_duration_sec=1.0)
            return
        self.image_stamp, self.image_time = msg.header.stamp, time.monotonic()

    def on_state(self, msg: RobotState) -> None:
        if self.policy is None:
            return
        try:
            self.state = state_from_msg(msg, self.state_dim, self.observation)
        except ValueError as exc:
            self.get_logger().error(f"dropping robot state: {exc}", throttle_duration_sec=1.0)
            return
        self.state_time = time.monotonic()

    def on_instruction(self, msg: String) -> None:
        self.set_instruction(msg.data)

    def set_instruction(self, text: str) -> None:
        if len(text) > MAX_INSTRUCTION_CHARS:
            self.get_logger().error(f"ignoring instruction of {len(text)} characters (limit "
                                    f"{MAX_INSTRUCTION_CHARS}); keeping the previous one")
            return
        if self.policy is None:
            self.get_logger().warning(f"instruction {text!r} received, but {self.problem}")
            return
        try:
            if self.runner is None:
                self.runner = PolicyRunner(self.policy, text, self.config.n_action_steps or None,
                                           self.config.inference_steps or None, self.config.seed)
                unknown = self.runner.unknown_words
            else:
                unknown = self.runner.set_instruction(text)
        except (MiniVLAError, ValueError) as exc:
            self.get_logger().error(f"ignoring instruction: {exc}")
            return
        note = f" (words not in the vocabulary, read as <unk>: {', '.join(unknown)})" if unknown else ""
        self.get_logger().info(f"instruction: {text!r}{note}")

    def on_episode_status(self, msg: EpisodeStatus) -> None:
        if msg.episode != self.episode:  # new episode: drop the rest of the old chunk
            self.episode = msg.episode
            if self.runner is not None:
                self.runner.reset()

    # --- control loop -------------------------------------------------------------------------
    def tick(self) -> None:
        tick_stamp = self.get_clock().now().to_msg()
        now = time.monotonic()
        if self.tick_times and now - self.tick_times[-1] > 1.5 * self.period:
            self.dropped_ticks += int(round((now - self.tick_times[-1]) / self.period)) - 1
        self.tick_times.append(now)
        self.ticks += 1
        problem = self.why_not_ready(now)
        if problem != self.problem:  # log changes only (rclpy wants one severity per call site)
            if problem is None:
                self.get_logger().info("publishing action commands")
            else:
                self.get_logger().warning(f"not acting: {problem}")
            self.problem = problem
        if problem is not None:
            return
        try:
            action = self.runner.act(self.image, self.state)
        except ValueError as exc:
            self.get_logger().error(f"not acting: {exc}", throttle_duration_sec=1.0)
            return
        if self.runner.step_in_chunk == 0:  # a new chunk was sampled from the current observation
            self.latencies.append(self.runner.last_sample_seconds)
            self.chunk_stamp = self.image_stamp
        msg = ActionCommand()
        msg.header.stamp = tick_stamp
        msg.action = [float(a) for a in np.clip(action, -1.0, 1.0)]
        msg.chunk = max(self.runner.chunk_index, 0)
        msg.step_in_chunk = self.runner.step_in_chunk
        msg.observation_stamp = self.chunk_stamp
        self.command_pub.publish(msg)

    def why_not_ready(self, now: float) -> str | None:
        if self.policy is None:
            return self.problem if self.problem.startswith("no policy") else "no policy loaded"
        if self.runner is None:
            return "no instruction received yet"
        stale = self.config.stale_after
        if now - self.image_time > stale:
            return f"camera image is stale (none newer than {stale} s)"
        if now - self.state_time > stale:
            return f"robot state is stale (none newer than {stale} s)"
        return None

    def publish_status(self) -> None:
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.active = self.problem is None
        msg.reason = self.problem or ""
        msg.control_rate = float(self.config.control_rate)
        if len(self.tick_times) > 1:
            periods = np.diff(self.tick_times)
            msg.achieved_rate = float(1.0 / periods.mean())
            msg.tick_jitter_p99_ms = float(np.percentile(np.abs(periods - self.period), 99) * 1e3)
        if self.latencies:
            msg.sampling_latency_p50_ms = float(np.percentile(self.latencies, 50) * 1e3)
            msg.sampling_latency_p99_ms = float(np.percentile(self.latencies, 99) * 1e3)
        msg.ticks, msg.dropped_ticks = self.ticks, self.dropped_ticks
        msg.instruction = self.runner.instruction if self.runner else ""
        self.status_pub.publish(msg)


def main(args=None) -> None:
    run_node(PolicyNode, args)


if __name__ == "__main__":
    main()
