"""Demonstration bags -> the training dataset (`minivla bag2data BAG... --out DATASET`).

Reads rosbag2 folders (MCAP or sqlite3 storage, as written by `ros2 bag record` or
`minivla record`) and bare .mcap files (e.g. from the `mcap-ros2-support` writer). Needs
`rosbags` and `mcap` only, no rclpy. Messages are taken in arrival order, and:
- each action command is paired with the newest camera image and robot state before it; when
  several commands answer the same observation, the newest wins (the simulator bridge, like a
  robot driver, applies only the newest command at each step); a command whose observation_stamp names
  an observation before the current episode's first (the answer to the last episode's final observation,
  which a simulator publishes a few milliseconds before the next episode's first) labels nothing: no step
  of an episode takes an action meant for another;
- episodes are split by episode_status: an episode ends at its status with done=True, whose
  success flag decides whether it is kept (failed ones only with keep_failed);
- each episode carries the newest instruction before its first action (the task's default
  instruction when the bag has none);
- a bag that stops mid-way (recorder killed, file cut) still gives every episode that was
  complete before the cut; the unfinished one is dropped and counted;
- a topic whose header stamps go backwards, by more than in_stamp_order's window can sort out (a clock reset, a
  driver stamping with another clock), is refused, naming the topic and how many times (StampsForward).
"""

from __future__ import annotations

import heapq

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minivla_core.config import OBSERVATIONS
from minivla_core.data.dataset import DatasetWriter
from minivla_core.envs.metaworld_env import instruction_for
from minivla_core.errors import DatasetError
from minivla_ros import graph
from minivla_ros.bag_types import make_typestore
from minivla_ros.images import decode_image

RECORDED_NAMES = {topic.absolute for topic in graph.RECORDED}  # the topics read; any others in a bag are skipped


@dataclass
class Summary:
    episodes: int = 0
    steps: int = 0
    dropped_failed: int = 0
    dropped_incomplete: int = 0
    unpaired_actions: int = 0
    truncated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"{self.episodes} episodes ({self.steps} steps) written; dropped {self.dropped_failed} failed and "
                f"{self.dropped_incomplete} incomplete episodes; {self.unpaired_actions} actions left unpaired (sent "
                f"before any observation or in answer to an episode's final one or an earlier episode's)")
        return "\n".join([text] + [f"note: {n}" for n in self.notes + self.truncated])


def read_messages(path: Path, typestore, wanted: set[str] = RECORDED_NAMES) -> Iterator[tuple[str, int, object]]:
    """(topic, log time in ns, decoded message) of the topics `wanted`, in recorded order, after one
    ("__channel__", 0, topic) per topic in the bag. Raises DatasetError for unreadable input, and BagTruncated
    (after yielding everything readable) when the data stops mid-way."""
    mcap_files = [path] if path.is_file() else sorted(path.glob("*.mcap"))
    if path.is_file() and path.suffix != ".mcap":
        raise DatasetError(f"{path} is neither a rosbag2 folder nor an .mcap file")
    if not path.exists():
        raise DatasetError(f"bag {path} does not exist")
    if mcap_files:
        for file in mcap_files:
            yield from _read_mcap(file, typestore, wanted)
        return
    if path.is_dir() and (path / "metadata.yaml").exists():
        yield from _read_rosbag2(path, typestore, wanted)
        return
    raise DatasetError(f"{path} holds no .mcap file and no metadata.yaml: not a bag")


class BagTruncated(Exception):
    pass


def _read_mcap(file: Path, typestore, wanted: set[str]) -> Iterator[tuple[str, object]]:
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas, channels = {}, {}
    with open(file, "rb") as stream:
        try:
            records = StreamReader(stream).records
            for record in records:
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel):
                    channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
                    yield "__channel__", 0, record.topic
                elif isinstance(record, Message) and record.channel_id in channels:
                    topic, msgtype = channels[record.channel_id]
                    if topic in wanted:
                        yield topic, record.log_time, typestore.deserialize_cdr(bytes(record.data), msgtype)
        except (McapError, EOFError, ValueError, AssertionError, KeyError) as exc:
            if not channels:
                raise DatasetError(f"{file} is not a readable MCAP file: {exc}") from exc
            raise BagTruncated(f"{file} stops mid-way ({type(exc).__name__}: {exc})") from exc


def _read_rosbag2(path: Path, typestore, wanted: set[str]) -> Iterator[tuple[str, object]]:
    from rosbags.highlevel import AnyReader

    try:
        reader = AnyReader([path], default_typestore=typestore)
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise DatasetError(f"bag {path} cannot be opened: {exc}") from exc
    try:
        for connection in reader.connections:
            yield "__channel__", 0, connection.topic
        connections = [c for c in reader.connections if c.topic in wanted]
        try:
            for connection, log_time, raw in reader.messages(connections=connections):
                yield connection.topic, log_time, reader.deserialize(raw, connection.msgtype)
        except Exception as exc:
            raise BagTruncated(f"bag {path} stops mid-way ({type(exc).__name__}: {exc})") from exc
    finally:
        reader.close()


# Messages with the same stamp are taken in this order: what the episode is about, the observation, the episode's
# status after it, then the action that answers it.
TOPIC_ORDER = {topic.absolute: i for i, topic in enumerate(
    (graph.INSTRUCTION, graph.IMAGE, graph.STATE, graph.EPISODE_STATUS, graph.ACTION))}


def in_stamp_order(messages: Iterator[tuple[str, int, object]], window_ns: int = 2_000_000_000,
                   order: dict[str, int] = TOPIC_ORDER, with_time: bool = False):
    """Messages re-sorted by header stamp: (topic, msg), or (topic, time in ns, msg) `with_time`; each
    ("__channel__", topic) passes through at once.

    A recorder takes simultaneous messages in whatever order its executor serves them, so log
    time order can put a command before the observation it answers. Header stamps are what the
    publishers meant; messages with the same stamp come in `order` of their topics. A message without a
    header (a std_msgs/Float64 gripper command, a String instruction) is placed at its log time less
    the bag's delivery delay, the median of log time minus stamp over the stamped messages so far: its
    log time alone would put an episode number published just before an observation after it. Sorting
    happens in a sliding window, so memory stays bounded."""
    heap: list = []
    count = 0
    delays: deque[int] = deque(maxlen=200)  # log time - stamp of the newest stamped messages, ns
    source = iter(messages)

    def out(item):
        key, _, _, topic, msg = item
        return (topic, key, msg) if with_time else (topic, msg)

    while True:
        try:
            topic, log_time, msg = next(source)
        except StopIteration:
            break
        except BagTruncated:  # what was read before the cut still counts: flush it, then report the cut
            while heap:
                yield out(heapq.heappop(heap))
            raise
        if topic == "__channel__":
            yield (topic, 0, msg) if with_time else (topic, msg)
            continue
        key = header_stamp(msg)
        if key is not None:
            delays.append(log_time - key)
        else:
            key = log_time - (int(np.median(delays)) if delays else 0)
        heapq.heappush(heap, (key, order[topic], count, topic, msg))
        count += 1
        while heap and heap[0][0] < log_time - window_ns:
            yield out(heapq.heappop(heap))
    while heap:
        yield out(heapq.heappop(heap))


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time in ns (0 for a zero stamp: not given)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def header_stamp(msg) -> int | None:
    """A message's header stamp in ns; None for a message without a header, or with a zero stamp."""
    stamp = getattr(getattr(msg, "header", msg), "stamp", None)  # a std_msgs/Header is its own header
    if not hasattr(stamp, "nanosec") or not (stamp.sec or stamp.nanosec):
        return None
    return stamp_ns(stamp)


class StampsForward:
    """Each topic's header stamps, in the order a converter takes its messages (in_stamp_order's), must go forwards.
    A small step back (two publishers on one topic, a recorder's jitter) is sorted out by in_stamp_order; one beyond
    its window (a clock reset, a driver stamping with another clock) would cut episodes into pieces and pair messages
    across the jump. Counts the steps back of each topic; check() refuses a bag with any."""

    def __init__(self):
        self.newest: dict[str, int] = {}  # topic -> its newest stamp, ns
        self.backwards: dict[str, list[int]] = {}  # topic -> [times its stamps went back, the largest step back in ns]

    def see(self, topic: str, msg) -> None:
        stamp = header_stamp(msg)
        if stamp is None:
            return
        newest = self.newest.get(topic)
        if newest is not None and stamp < newest:
            times, largest = self.backwards.get(topic, [0, 0])
            self.backwards[topic] = [times + 1, max(largest, newest - stamp)]
        self.newest[topic] = stamp  # after a reset, the new clock is the one to follow

    def check(self, bag: Path) -> None:
        if self.backwards:
            where = "; ".join(f"on {topic} {times} time(s), by up to {largest / 1e9:.3f} s"
                              for topic, (times, largest) in sorted(self.backwards.items()))
            raise DatasetError(f"bag {bag}: header stamps go backwards {where}. Messages are paired by their stamps, "
                               f"so the episodes would be cut at each jump: re-stamp the bag, or cut it there")


def image_array(msg) -> np.ndarray:
    return decode_image(msg.data, msg.height, msg.width, msg.step, msg.encoding)


def state_protocol(msg, bag, seen: str | None) -> str:
    """The robot state's observation protocol; one bag holds one."""
    observation = msg.observation
    if observation not in OBSERVATIONS:
        raise DatasetError(f"bag {bag}: /robot_state has observation protocol {observation!r}; expected one of "
                           f"{sorted(OBSERVATIONS)}")
    if seen is not None and observation != seen:
        raise DatasetError(f"bag {bag}: /robot_state switches observation protocol from {seen!r} to {observation!r}")
    return observation


def write_episode(writer, out, steps, task, episode, instruction, default_instruction, success, bag, summary,
                  observation):
    if writer is None:
        writer = DatasetWriter(out, steps[0][0].shape[0], len(steps[0][1]), len(steps[0][2]), observation)
    if instruction is None:
        instruction = default_instruction
        summary.notes.append(f"{bag} has no instruction before episode {episode}: used {instruction!r}")
    images, states, actions = (np.stack(column) for column in list(zip(*steps))[:3])
    try:
        writer.append(images, states, actions, task=task, instruction=instruction, success=success,
                      source="bag", bag=str(bag), episode=int(episode))
    except DatasetError as exc:
        raise DatasetError(f"bag {bag}, episode {episode}: {exc}") from exc
    summary.episodes += 1
    summary.steps += len(steps)
    return writer


def convert(bags: list[str | Path], out: str | Path, keep_failed: bool = False) -> Summary:
    typestore = make_typestore()
    summary = Summary()
    writer: DatasetWriter | None = None
    try:
        for bag in map(Path, bags):
            writer = convert_bag(bag, typestore, out, keep_failed, summary, writer)
    finally:
        if writer is not None:
            writer.close()  # releases the dataset's lock
    return summary


def convert_bag(bag: Path, typestore, out, keep_failed: bool, summary: Summary, writer: DatasetWriter | None):
    """Append one bag's episodes to the dataset (creating its writer on the first episode); returns the writer."""
    topics: set[str] = set()
    image = state = None
    instruction = None
    episode = task = step = None
    episode_start = 0  # the stamp (ns) of the current episode's first observation
    steps: list[tuple] = []  # (image, state, action, step of the observation)
    episode_instruction = None
    observation = None
    messages = 0
    stamps = StampsForward()
    try:
        for topic, msg in in_stamp_order(read_messages(bag, typestore)):
            if topic == "__channel__":
                topics.add(msg)
                continue
            messages += 1
            stamps.see(topic, msg)
            if topic == graph.IMAGE.absolute:
                image = image_array(msg)
            elif topic == graph.STATE.absolute:
                state = np.asarray(msg.state, dtype=np.float32)
                observation = state_protocol(msg, bag, observation)
            elif topic == graph.INSTRUCTION.absolute:
                instruction = msg.data
            elif topic == graph.ACTION.absolute:
                answers = stamp_ns(msg.observation_stamp)  # 0: not given
                if image is None or state is None or episode is None or 0 < answers < episode_start:
                    summary.unpaired_actions += 1
                    continue
                if not steps:
                    episode_instruction = instruction
                action = np.asarray(msg.action, dtype=np.float32)
                if steps and steps[-1][3] == step:
                    steps[-1] = (image, state, action, step)  # a newer command for the same observation
                else:
                    steps.append((image, state, action, step))
            elif topic == graph.EPISODE_STATUS.absolute:
                if msg.episode != episode and steps:  # a new episode without a done for the old one
                    summary.dropped_incomplete += 1
                    steps = []
                if msg.episode != episode:
                    episode_start = stamp_ns(msg.header.stamp)
                episode, task, step = msg.episode, msg.task, msg.step
                if msg.done:
                    stamps.check(bag)  # no episode across a jump back in time is written
                    if steps and (msg.success or keep_failed):
                        writer = write_episode(writer, out, steps, task, episode, episode_instruction,
                                               instruction_for(task), bool(msg.success), bag, summary, observation)
                    elif steps:
                        summary.dropped_failed += 1
                    steps, image, state, episode = [], None, None, None
    except BagTruncated as exc:
        summary.truncated.append(f"{exc}; kept the episodes completed before that point")
    except ValueError as exc:  # a message that decodes but makes no sense (an image whose step lies, ...)
        raise DatasetError(f"bag {bag}: message {messages} ({topic}): {exc}") from exc
    if steps:
        summary.dropped_incomplete += 1
    if messages == 0 and not summary.truncated:
        raise DatasetError(f"bag {bag} has no messages")
    missing = [t.absolute for t in graph.RECORDED if t.required and t.absolute not in topics]
    if missing:
        raise DatasetError(f"bag {bag} lacks the required topic(s) {', '.join(missing)} "
                           f"(recorded: {', '.join(sorted(topics)) or 'none'})")
    stamps.check(bag)
    return writer
