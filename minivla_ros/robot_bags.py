"""Any robot's bags -> the training dataset, through the robot interface (`minivla bag2data BAG... --robot R.yaml`).

bag2data.py reads the bags `minivla record` writes, where every command names the observation it
answers. A robot's own bags (`ros2 bag record` of its camera, joint states and the teleop or expert
commands) have no such pairing: each topic runs at its own rate. So this converter resamples:

- A clock ticks at `bag2data.rate` from the bag's first message. At each tick T the observation is the
  newest message of each input (cameras, pose, joints: the `robot` section of R.yaml) at or before T,
  each no older than `stale` seconds (0.25 s, or two ticks if longer); the action is the command in
  force one period later: the newest command (and gripper command) at or before T + 1/rate, if it is
  no older than `stale` then, as a velocity controller holds a command until its time-out. Ticks with
  no command in force are no step of any episode.
- Episodes end at a message on `bag2data.episode_topic` when it is set; otherwise after
  `bag2data.episode_gap` seconds without a command (0: one episode per bag), and at the bag's end.
- The instruction is the newest std_msgs/String on `bag2data.instruction_topic` at an episode's first
  step, else `bag2data.instruction`; an episode with neither is an error naming the bag.
- A missing topic, joint or field is named with the bag. Everything written goes through
  DatasetWriter's checks (finite, in range), as collected demos do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minivla_core.actions import ACTION_DIM
from minivla_core.config import OBSERVATIONS, Bag2DataConfig, RobotConfig
from minivla_core.data.dataset import DatasetWriter
from minivla_core.errors import DatasetError
from minivla_ros.bag2data import BagTruncated, in_stamp_order, read_messages
from minivla_ros.bag_types import make_typestore
from minivla_ros.images import image_from_msg
from minivla_ros.interfaces import (
    STANDARD_ACTIONS, assemble_state, check_interface, gripper_from_msg, joint_positions, motion_from_msg,
    position_from_pose, state_size)


def absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


@dataclass
class RobotTopics:
    """The bag topics the robot interface reads, each with its role."""

    cameras: list[str]
    pose: str = ""
    joints: str = ""
    command: str = ""
    gripper: str = ""

    @classmethod
    def of(cls, robot: RobotConfig) -> "RobotTopics":
        if not robot.camera_topics:
            raise DatasetError("robot.camera_topics is empty: name the camera topic(s) of your robot's bags")
        if robot.state_type != "PoseAndJoints" or robot.action_type not in STANDARD_ACTIONS:
            raise DatasetError(f"robot bags are read through standard messages: robot.state_type must be "
                               f"PoseAndJoints and robot.action_type one of {', '.join(STANDARD_ACTIONS)} (got "
                               f"{robot.state_type}, {robot.action_type}); bags of `minivla record` need no --robot")
        return cls([absolute(t) for t in robot.camera_topics],
                   absolute(robot.state_pose_topic) if robot.state_pose_topic else "",
                   absolute(robot.state_joint_topic) if robot.state_joint_topic else "",
                   absolute(robot.action_topic), absolute(robot.gripper_topic) if robot.gripper_topic else "")

    def required(self) -> list[str]:
        return [t for t in (*self.cameras, self.pose, self.joints, self.command, self.gripper) if t]


@dataclass
class RobotSummary:
    episodes: int = 0
    steps: int = 0
    ticks_without_inputs: int = 0  # ticks with a live command but a missing or stale camera or state
    short_dropped: int = 0  # episodes of fewer than MIN_STEPS steps
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"{self.episodes} episodes ({self.steps} steps) written; {self.short_dropped} too short to keep; "
                f"{self.ticks_without_inputs} ticks skipped for a missing or stale camera image or state")
        return "\n".join([text] + [f"note: {n}" for n in self.notes])


MIN_STEPS = 2


class Resampler:
    """Newest input of each role; observations at clock ticks; actions one period later (see the module doc)."""

    def __init__(self, robot: RobotConfig, topics: RobotTopics, options: Bag2DataConfig, image_size: int):
        self.robot, self.topics, self.image_size = robot, topics, image_size
        self.period = 1.0 / options.rate
        self.stale = max(0.25, 2 * self.period)
        self.gap = options.episode_gap
        self.newest: dict[str, tuple[float, object]] = {}  # topic -> (time, message)
        self.next_tick: float | None = None
        self.pending: list[tuple[float, list, np.ndarray]] = []  # observations waiting for their action
        self.steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # the open episode's (images, state, action)
        self.instruction: str | None = None
        self.episode_instruction: str | None = None
        self.closed: list[tuple[list, str | None]] = []  # finished episodes and their instructions
        self.skipped = 0

    def add(self, t: float, topic: str, msg) -> None:
        if self.next_tick is None:
            self.next_tick = t
        while self.next_tick < t:  # ticks the stream has passed: their observation is complete
            self.observe(self.next_tick)
            self.next_tick += self.period
        while self.pending and self.pending[0][0] + self.period < t:
            self.act(*self.pending.pop(0))
        self.newest[topic] = (t, msg)

    def observe(self, tick: float) -> None:
        inputs = [*self.topics.cameras] + [t for t in (self.topics.pose, self.topics.joints) if t]
        if any(topic not in self.newest or tick - self.newest[topic][0] > self.stale for topic in inputs):
            if self.command_live(tick):
                self.skipped += 1
            return
        images = [image_from_msg(self.newest[t][1], self.image_size) for t in self.topics.cameras]
        pose = position_from_pose(self.newest[self.topics.pose][1]) if self.topics.pose else None
        joints = (joint_positions(self.newest[self.topics.joints][1], self.robot.state_joints)
                  if self.topics.joints else None)
        self.pending.append((tick, images, assemble_state(self.robot, pose, joints)))

    def command_age(self, tick: float) -> float:
        """Seconds from the newest command to one period after `tick` (infinite before the first command)."""
        if self.topics.command not in self.newest:
            return float("inf")
        return tick + self.period - self.newest[self.topics.command][0]

    def command_live(self, tick: float) -> bool:
        """A command holds for `stale` seconds, as a velocity controller's command does until its time-out."""
        return self.command_age(tick) <= self.stale

    def act(self, tick: float, images: list, state: np.ndarray) -> None:
        if not self.command_live(tick):  # nobody is demonstrating: no step; a long pause ends the episode
            if self.gap > 0 and self.command_age(tick) > self.gap:
                self.end_episode()
            return
        motion = motion_from_msg(self.newest[self.topics.command][1], self.robot)
        if self.topics.gripper:
            if self.topics.gripper not in self.newest:
                return  # no gripper command yet: not a complete action
            motion = np.append(motion, gripper_from_msg(self.newest[self.topics.gripper][1]))
        if not self.steps:
            self.episode_instruction = self.instruction
        self.steps.append((np.stack(images), state, motion.astype(np.float32)))

    def end_episode(self) -> None:
        if self.steps:
            self.closed.append((self.steps, self.episode_instruction))
        self.steps = []

    def finish(self) -> None:
        for pending in self.pending:
            self.act(*pending)
        self.pending = []
        self.end_episode()


def convert_robot_bags(bags: list[str | Path], out: str | Path, robot: RobotConfig, options: Bag2DataConfig,
                       image_size: int) -> RobotSummary:
    """Append every episode of `bags` to the dataset at `out` (images resized to image_size)."""
    topics = RobotTopics.of(robot)
    state_dim = state_size(robot)
    try:
        check_interface(robot, ACTION_DIM, state_dim, len(topics.cameras))
    except ValueError as exc:
        raise DatasetError(f"robot interface: {exc}") from None
    observation = next((name for name, size in OBSERVATIONS.items() if size == state_dim), None)
    if observation != "proprio":
        raise DatasetError(f"the robot's state has {state_dim} numbers; training takes 4 so far (position x, y, z "
                           f"and one gripper joint, the proprio protocol)")
    if not options.rate > 0:
        raise DatasetError(f"bag2data.rate must be > 0 observations per second, got {options.rate}")
    typestore = make_typestore()
    summary = RobotSummary()
    wanted = set(topics.required()) | {absolute(options.instruction_topic)}
    if options.episode_topic:
        wanted.add(absolute(options.episode_topic))
    order = {topic: i for i, topic in enumerate([absolute(options.instruction_topic), *topics.required(),
                                                 absolute(options.episode_topic or "/_")])}
    writer = None
    try:
        for bag in map(Path, bags):
            writer = convert_one(bag, typestore, wanted, order, robot, topics, options, image_size, out, writer,
                                 summary)
    finally:
        if writer is not None:
            writer.close()
    return summary


def convert_one(bag, typestore, wanted, order, robot, topics, options, image_size, out, writer, summary):
    resampler = Resampler(robot, topics, options, image_size)
    seen: set[str] = set()
    messages = 0
    topic = None
    try:
        for topic, time_ns, msg in in_stamp_order(read_messages(bag, typestore, wanted), order=order,
                                                  with_time=True):
            if topic == "__channel__":
                seen.add(msg)
                continue
            messages += 1
            t = time_ns * 1e-9
            if topic == absolute(options.instruction_topic):
                resampler.instruction = msg.data
            elif options.episode_topic and topic == absolute(options.episode_topic):
                resampler.finish()  # the open episode ends here; the resampler goes on with the next
            else:
                resampler.add(t, topic, msg)
    except BagTruncated as exc:
        summary.notes.append(f"{exc}; kept what came before")
    except ValueError as exc:
        raise DatasetError(f"bag {bag}: message {messages} ({topic}): {exc}") from exc
    missing = [t for t in topics.required() if t not in seen]
    if missing:
        raise DatasetError(f"bag {bag} lacks the topic(s) {', '.join(missing)} that the robot interface names "
                           f"(it has: {', '.join(sorted(seen)) or 'none'})")
    resampler.finish()
    summary.ticks_without_inputs += resampler.skipped
    for steps, instruction in resampler.closed:
        if len(steps) < MIN_STEPS:
            summary.short_dropped += 1
            continue
        instruction = instruction or options.instruction
        if not instruction:
            raise DatasetError(f"bag {bag}: an episode has no instruction: record one on {options.instruction_topic} "
                               f"or give it (--set bag2data.instruction='...')")
        if writer is None:
            writer = DatasetWriter(out, image_size, steps[0][1].shape[0], ACTION_DIM, "proprio",
                                   camera={"name": "camera", "position": []},
                                   extra_cameras=[f"camera{i}" for i in range(1, len(topics.cameras))])
        images, states, actions = (np.stack(column) for column in zip(*steps))
        try:
            writer.append(images, states, actions, task=options.task, instruction=instruction, success=True,
                          source="robot bag", bag=str(bag))
        except DatasetError as exc:
            raise DatasetError(f"bag {bag}: {exc}") from exc
        summary.episodes += 1
        summary.steps += len(steps)
    return writer
