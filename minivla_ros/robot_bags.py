"""Any robot's bags -> the training dataset, through the robot interface (`minivla bag2data BAG... --robot R.yaml`).

bag2data.py reads the bags `minivla record` writes, where every command names the observation it
answers. A robot's own bags (`ros2 bag record` of its camera, joint states and the teleop or expert
commands) have no such pairing: each topic runs at its own rate. So this converter resamples:

- With `bag2data.rate` 0 there is one observation per frame of the first camera, at its stamp: right
  for a robot whose driver steps once per frame (the simulator bridge). Otherwise a clock ticks at
  `bag2data.rate`, starting half a period after the first camera frame (so a frame that comes a
  little early or late still falls on its own tick). At each tick T the observation is the newest
  message of each input (cameras, pose, joints: the `robot` section of R.yaml) at or before T, each
  no older than `stale` seconds (`bag2data.stale_after`, 0.25 s, or two ticks if longer).
- Its action is the command in force when the next camera frame came: the newest command (and
  gripper command) before it, if no older than `stale` then, as a velocity controller holds a
  command until its time-out (with no next frame: one period after the observation's frame). A
  robot's driver applies a command and then reports what it did, so the command in force at the
  next frame is the one that moved the robot from this observation to the next; a time one period
  after the tick would often take the answer to the next frame instead (measured on Fetch bags: the
  hand's motion agreed with the action one step before its label, correlation 0.86 against 0.65;
  now 0.998 with its own).
  Ticks with no command in force are no step of any episode. An action has the robot's own size
  (interfaces.py: action_size): a TwistStamped's 3 numbers, then the gripper's when robot.gripper_topic
  is set (empty: a robot with no gripper, 3-number actions); a Float64MultiArray's, its data's length.
- Episodes end at a message on `bag2data.episode_topic` when it is set: the frames stamped before it are the old
  episode's, even the last one when nothing else came between it and the marker, and no input or command before it
  labels or fills an observation after it; otherwise after
  `bag2data.episode_gap` seconds without a command (0: one episode per bag), and at the bag's end.
  With markers, the observations before the first one belong to no episode (a recording started mid-way: that
  episode's start and result are unknown): dropped, and counted in the summary. A bag with no message on the
  marker topic is refused, naming the topic and the bag's topics: a misnamed topic would make one episode of many.
- An episode's result is the newest on `bag2data.success_topic` (diagnostic_msgs/DiagnosticArray with a `success`
  value, as the simulator bridge publishes it, or std_msgs/Bool) while it is open, or before the next episode's
  first step; one whose result says it failed is dropped unless `keep_failed`; one with none is kept, and written
  and counted as "success unknown".
- A topic whose stamps go backwards (after the re-sort of in_stamp_order, so by more than its window) is refused,
  naming the topic and how many times: the pairing reads time forwards, and would cut episodes into pieces.
- The instruction is the newest std_msgs/String on `bag2data.instruction_topic` at an episode's first
  step, else `bag2data.instruction`; an episode with neither is an error naming the bag.
- A missing topic, joint or field is named with the bag and the topic it is missing from (TopicError: the
  message read, not the one whose arrival made it be read). Everything written goes through
  DatasetWriter's checks (finite, in range), as collected demos do.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minivla_core.config import Bag2DataConfig, RobotConfig
from minivla_core.data.dataset import DatasetWriter
from minivla_core.errors import DatasetError
from minivla_ros.bag2data import BagTruncated, StampsForward, in_stamp_order, read_messages
from minivla_ros.bag_types import make_typestore
from minivla_ros.images import image_from_msg
from minivla_ros.interfaces import (
    STANDARD_ACTIONS, action_size, assemble_state, check_interface, gripper_from_msg, joint_positions,
    motion_from_msg, position_from_pose, state_size)


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
    failed_dropped: int = 0  # episodes whose result said they failed (kept with keep_failed)
    success_unknown: int = 0  # episodes written with no result on success_topic
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"{self.episodes} episodes ({self.steps} steps) written, {self.success_unknown} of them with success "
                f"unknown; {self.failed_dropped} failed ones dropped; {self.short_dropped} too short to keep; "
                f"{self.ticks_without_inputs} ticks skipped for a missing or stale camera image or state")
        return "\n".join([text] + [f"note: {n}" for n in self.notes])


class TopicError(ValueError):
    """A message that cannot be read, of `topic`: the one it came on, not the one whose arrival made it be read."""

    def __init__(self, topic: str, problem: ValueError):
        super().__init__(f"topic {topic}: {problem}")


@dataclass
class Episode:
    steps: list  # (images, state, action) of each step
    instruction: str | None
    success: bool | None = None  # its result on bag2data.success_topic; None: the bag says nothing


def episode_result(msg) -> bool | None:
    """An episode's result on bag2data.success_topic: std_msgs/Bool's data, or the `success` value of a
    diagnostic_msgs/DiagnosticArray's status (the simulator bridge's `sim_bridge: episode`); None for an array with
    no such status (other diagnostics share /diagnostics). ValueError for anything else."""
    if hasattr(msg, "status"):
        for status in msg.status:
            values = {item.key: item.value for item in status.values}
            if "success" in values:
                text = values["success"].strip().lower()
                if text not in ("true", "false", "1", "0"):
                    raise ValueError(f"status {status.name!r} has success {values['success']!r}: expected true or "
                                     f"false")
                return text in ("true", "1")
        return None
    if isinstance(getattr(msg, "data", None), bool):
        return msg.data
    raise ValueError("an episode result is a diagnostic_msgs/DiagnosticArray or a std_msgs/Bool")


MIN_STEPS = 2
FRAME_PERIOD = 0.1  # rate 0 (one observation per frame): seconds on to the command of a frame with no next frame


def observation_of(robot: RobotConfig) -> str:
    """A position and one gripper joint is the proprio protocol the simulators share (the Fetch bridge's bags give
    policies that run on either); any other state is the robot's own ("robot": train with env.observation robot)."""
    proprio = bool(robot.state_pose_topic and robot.state_joint_topic) and len(robot.state_joints) == 1
    return "proprio" if proprio else "robot"


class Resampler:
    """Newest input of each role; observations at clock ticks between camera frames; each one's action is the
    command in force when the next frame came (see the module doc)."""

    def __init__(self, robot: RobotConfig, topics: RobotTopics, options: Bag2DataConfig, image_size: int):
        self.robot, self.topics, self.image_size = robot, topics, image_size
        self.action_dim = action_size(robot)  # None (a Float64MultiArray): the first command's
        self.per_frame = options.rate == 0  # one observation per frame of the first camera
        self.period = 1.0 / options.rate if options.rate > 0 else FRAME_PERIOD
        self.stale = max(options.stale_after, 2 * self.period)
        self.gap = options.episode_gap
        self.newest: dict[str, tuple[float, object]] = {}  # topic -> (time, message)
        self.commands = {topic: deque(maxlen=256) for topic in (topics.command, topics.gripper) if topic}
        self.next_tick: float | None = None
        self.pending: list[tuple[float, list, np.ndarray]] = []  # (frame time, images, state) waiting for an action
        self.steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # the open episode's (images, state, action)
        self.instruction: str | None = None
        self.episode_instruction: str | None = None
        self.closed: list[Episode] = []  # finished episodes
        self.success: bool | None = None  # the open episode's result, when one came
        self.started = not options.episode_topic  # with markers, no episode before the first
        self.before_first_marker = 0  # observations dropped for that
        self.skipped = 0

    def add(self, t: float, topic: str, msg) -> None:
        first_camera = self.topics.cameras[0]
        self.observe_ticks_before(t)
        if topic == first_camera and (self.per_frame or self.next_tick is None):
            # Per frame: a tick at each frame's own stamp (observed once a later message shows that every input
            # of that stamp is in). At a fixed rate, ticks fall half a period after frames: a frame that comes a
            # little early or late still lands on its own tick (a tick on a frame's time would take it or its
            # predecessor at random).
            self.next_tick = t if self.per_frame else t + self.period / 2
        if topic == first_camera:  # the observations before this frame get the command in force as it came
            while self.pending and self.pending[0][0] < t:
                self.act(*self.pending.pop(0), due=t)
        while self.pending and self.pending[0][0] + 2 * self.period < t:  # no next frame: one period on
            frame_time = self.pending[0][0]
            self.act(*self.pending.pop(0), due=frame_time + self.period)
        self.newest[topic] = (t, msg)
        if topic in self.commands:
            self.commands[topic].append((t, msg))

    def observe_ticks_before(self, t: float) -> None:
        """The ticks the stream has passed (messages come in stamp order: every input of theirs is in)."""
        while self.next_tick is not None and self.next_tick < t:
            self.observe(self.next_tick)
            self.next_tick = None if self.per_frame else self.next_tick + self.period

    def observe(self, tick: float) -> None:
        if not self.started:
            self.before_first_marker += 1
            return
        inputs = [*self.topics.cameras] + [t for t in (self.topics.pose, self.topics.joints) if t]
        if any(topic not in self.newest or tick - self.newest[topic][0] > self.stale for topic in inputs):
            if self.command_at(self.topics.command, tick + self.period) is not None:
                self.skipped += 1
            return
        images = [self.read(t, lambda msg: image_from_msg(msg, self.image_size)) for t in self.topics.cameras]
        pose = self.read(self.topics.pose, position_from_pose) if self.topics.pose else None
        joints = (self.read(self.topics.joints, lambda msg: joint_positions(msg, self.robot.state_joints))
                  if self.topics.joints else None)
        frame_time = self.newest[self.topics.cameras[0]][0]
        self.pending.append((frame_time, images, assemble_state(self.robot, pose, joints)))

    def read(self, topic: str, convert):
        """`convert` of the newest message on `topic`; a ValueError names that topic."""
        try:
            return convert(self.newest[topic][1])
        except ValueError as exc:
            raise TopicError(topic, exc) from exc

    def command_at(self, topic: str, due: float):
        """The newest command on `topic` at or before `due`, if it is no older than `stale` then (a velocity
        controller holds a command until its time-out); else None."""
        for when, msg in reversed(self.commands[topic]):
            if when <= due:
                return msg if due - when <= self.stale else None
        return None

    def seconds_without_command(self, due: float) -> float:
        before = [when for when, _ in self.commands[self.topics.command] if when <= due]
        return due - before[-1] if before else float("inf")

    def act(self, frame_time: float, images: list, state: np.ndarray, due: float) -> None:
        command = self.command_at(self.topics.command, due)
        if command is None:  # nobody is demonstrating: no step; a long pause ends the episode
            if self.gap > 0 and self.seconds_without_command(due) > self.gap:
                self.end_episode()
            return
        try:
            motion = motion_from_msg(command, self.robot)
        except ValueError as exc:
            raise TopicError(self.topics.command, exc) from exc
        if self.topics.gripper:
            gripper = self.command_at(self.topics.gripper, due)
            if gripper is None:
                return  # no gripper command in force: not a complete action
            try:
                motion = np.append(motion, gripper_from_msg(gripper))
            except ValueError as exc:
                raise TopicError(self.topics.gripper, exc) from exc
        self.action_dim = self.action_dim or motion.size
        if motion.size != self.action_dim:
            raise ValueError(f"the command in force gives an action of {motion.size} numbers, the ones before "
                             f"{self.action_dim}")
        if not self.steps:
            self.episode_instruction = self.instruction
        self.steps.append((np.stack(images), state, motion.astype(np.float32)))

    def end_episode(self) -> None:
        if self.steps:
            self.closed.append(Episode(self.steps, self.episode_instruction, self.success))
        self.steps, self.success = [], None

    def result(self, t: float, success: bool) -> None:
        """An episode's result at time t: the open episode's, once it has a step; else the one that ended last, if it
        has none yet (a result that comes after the next episode's marker, before its first step)."""
        self.observe_ticks_before(t)
        if self.steps:
            self.success = success
        elif self.closed and self.closed[-1].success is None:
            self.closed[-1].success = success

    def finish(self) -> None:
        for pending in self.pending:
            self.act(*pending, due=pending[0] + self.period)
        self.pending = []
        self.end_episode()

    def new_episode(self, t: float) -> None:
        """An episode marker at time t: the open episode ends with its frames before t, and no input or command of it
        fills or labels an observation of the next (the first frames of an episode, re-sent until its first command,
        would take the last episode's final command; at a fixed rate, a tick after t would take its last frame).
        A simulator publishes an episode's final frame and the next one's first within a few milliseconds: with no
        message between the final frame and the marker, that frame's tick is still open here, so it is observed
        now, in its own episode, not after the marker in the next."""
        self.observe_ticks_before(t)
        self.finish()
        for history in self.commands.values():
            history.clear()
        self.newest.clear()
        self.next_tick = None
        self.started = True


def convert_robot_bags(bags: list[str | Path], out: str | Path, robot: RobotConfig, options: Bag2DataConfig,
                       image_size: int) -> RobotSummary:
    """Append every episode of `bags` to the dataset at `out` (images resized to image_size)."""
    topics = RobotTopics.of(robot)
    state_dim = state_size(robot)
    try:
        check_interface(robot, action_size(robot), state_dim, len(topics.cameras))
    except ValueError as exc:
        raise DatasetError(f"robot interface: {exc}") from None
    if not options.rate >= 0:
        raise DatasetError(f"bag2data.rate must be >= 0 observations per second (0: one per camera frame), got "
                           f"{options.rate}")
    typestore = make_typestore()
    summary = RobotSummary()
    wanted = set(topics.required()) | {absolute(options.instruction_topic)}
    for topic in (options.episode_topic, options.success_topic):
        if topic:
            wanted.add(absolute(topic))
    # At one stamp: the instruction, an episode's start, then the observation, then the commands answering it, then
    # the result of an episode whose final observation it is.
    order = {topic: i for i, topic in enumerate([absolute(options.instruction_topic),
                                                 absolute(options.episode_topic or "/_"), *topics.required(),
                                                 absolute(options.success_topic or "/_")])}
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
    marker_topic, success_topic = absolute(options.episode_topic), absolute(options.success_topic)
    seen: set[str] = set()
    stamps = StampsForward()
    messages = markers = results = 0
    topic = None
    try:
        for topic, time_ns, msg in in_stamp_order(read_messages(bag, typestore, wanted), order=order,
                                                  with_time=True):
            if topic == "__channel__":
                seen.add(msg)
                continue
            messages += 1
            stamps.see(topic, msg)
            t = time_ns * 1e-9
            if topic == absolute(options.instruction_topic):
                resampler.instruction = msg.data
            elif options.episode_topic and topic == marker_topic:
                markers += 1
                resampler.new_episode(t)  # the open episode ends here; the resampler goes on with the next
            elif options.success_topic and topic == success_topic:
                success = episode_result(msg)
                if success is not None:
                    results += 1
                    resampler.result(t, success)
            else:
                resampler.add(t, topic, msg)
    except BagTruncated as exc:
        summary.notes.append(f"{exc}; kept what came before")
    except TopicError as exc:
        raise DatasetError(f"bag {bag}, {exc}") from exc
    except ValueError as exc:
        raise DatasetError(f"bag {bag}: message {messages} ({topic}): {exc}") from exc
    missing = [t for t in topics.required() if t not in seen]
    if missing:
        raise DatasetError(f"bag {bag} lacks the topic(s) {', '.join(missing)} that the robot interface names "
                           f"(it has: {', '.join(sorted(seen)) or 'none'})")
    if options.episode_topic and markers == 0:
        raise DatasetError(f"bag {bag} has no message on {marker_topic}, the episode marker topic "
                           f"(bag2data.episode_topic), so its episodes cannot be told apart (its topics: "
                           f"{', '.join(sorted(seen)) or 'none'}): name the topic that marks each episode's start, or "
                           f"set bag2data.episode_topic to '' to split episodes after bag2data.episode_gap seconds "
                           f"without a command")
    stamps.check(bag)
    resampler.finish()
    summary.ticks_without_inputs += resampler.skipped
    if resampler.before_first_marker:
        summary.notes.append(f"{bag}: {resampler.before_first_marker} observations before the first message on "
                             f"{marker_topic} belong to no episode (its start and result are unknown): dropped")
    unknown = 0
    for episode in resampler.closed:
        steps, instruction = episode.steps, episode.instruction
        if len(steps) < MIN_STEPS:
            summary.short_dropped += 1
            continue
        if episode.success is False and not options.keep_failed:
            summary.failed_dropped += 1
            continue
        instruction = instruction or options.instruction
        if not instruction:
            raise DatasetError(f"bag {bag}: an episode has no instruction: record one on {options.instruction_topic} "
                               f"or give it (--set bag2data.instruction='...')")
        if writer is None:
            writer = DatasetWriter(out, image_size, steps[0][1].shape[0], steps[0][2].shape[0], observation_of(robot),
                                   camera={"name": "camera", "position": []},
                                   extra_cameras=[f"camera{i}" for i in range(1, len(topics.cameras))])
        images, states, actions = (np.stack(column) for column in zip(*steps))
        try:
            writer.append(images, states, actions, task=options.task, instruction=instruction,
                          success=episode.success, source="robot bag", bag=str(bag))
        except DatasetError as exc:
            raise DatasetError(f"bag {bag}: {exc}") from exc
        summary.episodes += 1
        summary.steps += len(steps)
        unknown += episode.success is None
    summary.success_unknown += unknown
    if unknown:
        where = (f"no result on {success_topic} (bag2data.success_topic) came while they were open" if results
                 else f"the bag has no episode result on {success_topic} (bag2data.success_topic)")
        summary.notes.append(f"{bag}: {unknown} episode(s) kept as success unknown: {where}")
    return writer
