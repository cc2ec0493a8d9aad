"""Demonstrations through ROS: recorded bags, an independent reader and writer, conversion."""

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from minivla_core.config import EnvConfig
from minivla_core.data.collect import run_expert_episode
from minivla_core.data.dataset import load_episodes, read_index
from minivla_core.envs.metaworld_env import MetaWorldEnv, make_expert
from minivla_core.errors import DatasetError
from minivla_ros import bringup
from minivla_ros.bag2data import convert
from minivla_ros import graph
from minivla_ros.bag_types import make_typestore

RECORDED_TOPICS = {topic.absolute: topic.type for topic in graph.RECORDED}  # topic -> type, in a bag


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


@pytest.fixture(scope="module")
def recorded_bag(tmp_path_factory) -> Path:
    """Two push-v3 expert episodes recorded through the real graph (bridge, expert, recorder)."""
    out = tmp_path_factory.mktemp("bags") / "demo"
    result = bringup.record(episodes=2, task="push-v3", instruction="push the puck to the goal", out=out)
    assert [e["episode"] for e in result.episodes] == [0, 1]
    return out


def read_with_mcap_ros2(bag: Path):
    from mcap_ros2.reader import read_ros2_messages

    return list(read_ros2_messages(str(next(bag.glob("*.mcap")))))


def test_recorded_bag_opens_with_an_independent_reader_and_loses_nothing(recorded_bag):
    assert (recorded_bag / "metadata.yaml").is_file()
    messages = read_with_mcap_ros2(recorded_bag)  # mcap + mcap-ros2-support, not rosbags
    by_topic = defaultdict(list)
    for m in messages:
        by_topic[m.channel.topic].append(m)
    assert set(by_topic) == set(RECORDED_TOPICS)
    schema = by_topic["/action_command"][0].schema
    assert schema.name == "minivla_ros/msg/ActionCommand" and b"uint32 step_in_chunk" in schema.data
    assert by_topic["/instruction"][0].ros_msg.data == "push the puck to the goal"

    images = [stamp_ns(m.ros_msg.header.stamp) for m in by_topic["/camera/image_raw"]]
    states = [stamp_ns(m.ros_msg.header.stamp) for m in by_topic["/robot_state"]]
    observations = [m.ros_msg for m in by_topic["/episode_status"]]  # one per observation; an episode's last: done
    assert len(images) == len(set(images)) and sorted(images) == sorted(states)
    assert sorted(images) == sorted(stamp_ns(s.header.stamp) for s in observations)
    for episode in (0, 1):  # every step of every episode is in the bag
        steps = sorted({s.step for s in observations if s.episode == episode})
        done = [m.ros_msg for m in by_topic["/episode_status"] if m.ros_msg.done and m.ros_msg.episode == episode]
        assert steps == list(range(done[0].step + 1)) and done[0].success
    # Each answer names a recorded state, at most once, and every episode holds answers (its clock started with one).
    # (Whether the expert answered every state depends on scheduling: a state it got late may be overwritten, and
    # its answer to the very last one may come after the recording stopped.)
    answered = [stamp_ns(m.ros_msg.observation_stamp) for m in by_topic["/action_command"]]
    assert len(answered) == len(set(answered)) and set(answered) <= set(states)
    for episode in (0, 1):
        assert {stamp_ns(s.header.stamp) for s in observations if s.episode == episode} & set(answered)
    image = by_topic["/camera/image_raw"][0].ros_msg
    size = EnvConfig().image_size  # config/sim_policy.yaml's, the defaults'
    assert (image.encoding, image.width, image.height) == ("rgb8", size, size)
    # the recorded state is what a robot knows about itself; the expert's privileged state is not recorded
    state = by_topic["/robot_state"][0].ros_msg
    assert state.observation == "proprio" and len(state.state) == 4


def in_order(rows, candidates) -> bool:
    """Whether each of `rows` equals one of `candidates`, in their order, each candidate used at most once."""
    start = 0
    for row in rows:
        match = next((k for k in range(start, len(candidates)) if np.allclose(row, candidates[k], atol=1e-6)), None)
        if match is None:
            return False
        start = match + 1
    return True


def test_recorded_bag_converts_to_the_dataset_format(recorded_bag, tmp_path):
    summary = convert([recorded_bag], tmp_path / "data")
    assert summary.episodes == 2 and summary.dropped_failed == 0 and not summary.truncated
    meta, episodes = load_episodes(tmp_path / "data")
    messages = read_with_mcap_ros2(recorded_bag)
    done_steps = [m.ros_msg.step for m in messages if m.channel.topic == "/episode_status" and m.ros_msg.done]
    episode_of = {stamp_ns(m.ros_msg.header.stamp): m.ros_msg.episode for m in messages
                  if m.channel.topic == "/episode_status"}
    # At most one pair per simulator step, each of its own episode: the state one of that episode's, in order, and
    # the action the expert's answer to one of its states. (One pair for every step only when every answer came
    # before the next observation: that depends on scheduling.)
    for number, (episode, steps) in enumerate(zip(episodes, done_steps)):
        assert 1 <= len(episode.actions) <= steps
        own_states = [m.ros_msg.state for m in messages if m.channel.topic == "/robot_state"
                      and episode_of[stamp_ns(m.ros_msg.header.stamp)] == number]
        own_actions = [m.ros_msg.action for m in messages if m.channel.topic == "/action_command"
                       and episode_of.get(stamp_ns(m.ros_msg.observation_stamp)) == number]
        assert in_order(episode.states, own_states) and in_order(episode.actions, own_actions)
    for episode in episodes:
        assert episode.instruction == "push the puck to the goal" and episode.task == "push-v3"
        assert not np.array_equal(episode.states[0], episode.states[1])
    assert meta["image_size"] == EnvConfig().image_size and read_index(tmp_path / "data")[0]["source"] == "bag"
    assert meta["observation"] == "proprio" and meta["state_dim"] == 4  # what the policy may see, nothing more
    # Appending a second time adds to the same dataset.
    convert([recorded_bag], tmp_path / "data")
    assert len(load_episodes(tmp_path / "data")[1]) == 4


def expert_episode():
    with MetaWorldEnv(EnvConfig(seed=7)) as env:
        images, states, actions, success = run_expert_episode(env, make_expert("push-v3"), 0)
    assert success
    return np.stack(images)[:, 0], np.stack(states), np.stack(actions)  # the scene camera


def synthetic_messages(images, states, actions, with_state=True):
    """The topics as a graph would publish them, one stamp per observation, as plain dicts."""
    t0 = 1_700_000_000_000_000_000
    stamp = lambda ns: {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}  # noqa: E731
    yield t0, "/instruction", {"data": "push the puck to the goal"}
    for k in range(len(actions) + 1):
        t = t0 + (k + 1) * 50_000_000
        header = {"stamp": stamp(t), "frame_id": "camera"}
        image = images[min(k, len(images) - 1)]
        height, width = image.shape[:2]
        yield t, "/camera/image_raw", {"header": header, "height": height, "width": width, "encoding": "rgb8",
                                       "is_bigendian": 0, "step": 3 * width, "data": image.tobytes()}
        if with_state:
            yield t, "/robot_state", {"header": header, "observation": "proprio",
                                      "state": states[min(k, len(states) - 1)].tolist()}
        done = k == len(actions)
        yield t, "/episode_status", {"header": header, "task": "push-v3", "episode": 0, "step": k, "success": done,
                                     "done": False, "episode_return": 0.0}
        if done:
            yield t + 1000, "/episode_status", {"header": {"stamp": stamp(t + 1000), "frame_id": ""}, "task": "push-v3",
                                                "episode": 0, "step": k, "success": True, "done": True,
                                                "episode_return": 1.0}
        else:
            yield t + 2_000_000, "/action_command", {"header": {"stamp": stamp(t + 2_000_000), "frame_id": ""},
                                                     "action": actions[k].tolist(), "chunk": k, "step_in_chunk": 0,
                                                     "observation_stamp": stamp(t)}


def test_bag_from_an_independent_writer_converts(tmp_path):
    """A bare .mcap written by mcap-ros2-support (not by rosbags, not by our recorder)."""
    from mcap_ros2.writer import Writer

    images, states, actions = expert_episode()
    typestore = make_typestore()
    path = tmp_path / "other.mcap"
    with open(path, "wb") as stream:
        writer = Writer(stream)
        schemas = {topic: writer.register_msgdef(msgtype, typestore.generate_msgdef(msgtype, ros_version=2)[0])
                   for topic, msgtype in RECORDED_TOPICS.items()}
        for t, topic, message in synthetic_messages(images, states, actions):
            writer.write_message(topic, schemas[topic], message, log_time=t, publish_time=t)
        writer.finish()
    summary = convert([path], tmp_path / "data")
    assert summary.episodes == 1
    episode = load_episodes(tmp_path / "data")[1][0]
    np.testing.assert_array_equal(episode.images[:, 0], images)
    np.testing.assert_allclose(episode.states, states)
    np.testing.assert_allclose(episode.actions, actions)


def write_rosbags(path, storage, messages, topics=RECORDED_TOPICS):
    from rosbags.rosbag2 import StoragePlugin, Writer

    typestore = make_typestore()
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {t: writer.add_connection(t, m, typestore=typestore) for t, m in topics.items()}
        for t, topic, message in messages:
            if topic in connections:
                msg = to_message(typestore, RECORDED_TOPICS[topic], message)
                writer.write(connections[topic], t, typestore.serialize_cdr(msg, RECORDED_TOPICS[topic]))


def to_message(typestore, msgtype, value):
    """Plain dicts -> rosbags message objects, recursively."""
    cls = typestore.types[msgtype]
    fields = {}
    for name, (kind, detail) in typestore.fielddefs[msgtype][1]:
        item = value[name]
        if kind == 2:  # nested message
            fields[name] = to_message(typestore, detail[0] if isinstance(detail, tuple) else detail, item)
        elif isinstance(item, (bytes, list)):
            dtype = np.uint8 if isinstance(item, bytes) else np.float32
            fields[name] = np.frombuffer(item, dtype) if isinstance(item, bytes) else np.asarray(item, dtype)
        else:
            fields[name] = item
    return cls(**fields)


def test_an_answer_to_the_last_episode_labels_no_step_of_the_next(tmp_path):
    """The bridge publishes an episode's final observation and the next episode's first 3 ms apart, so the expert's
    answer to the final one comes after both; when the answer to the new episode's first observation is late too
    (after its second), the old answer used to label the new episode's first step."""
    stamp = lambda ns: {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}  # noqa: E731
    ms = 1_000_000

    def observation(t, episode, step, done=False):
        header = {"stamp": stamp(t), "frame_id": "camera"}
        picture = np.full((8, 8, 3), 10 * episode + step, np.uint8)
        yield t, "/camera/image_raw", {"header": header, "height": 8, "width": 8, "encoding": "rgb8",
                                       "is_bigendian": 0, "step": 24, "data": picture.tobytes()}
        yield t, "/robot_state", {"header": header, "observation": "proprio", "state": [episode, step, 0.0, 0.0]}
        yield t, "/episode_status", {"header": header, "task": "push-v3", "episode": episode, "step": step,
                                     "success": done, "done": done, "episode_return": 0.0}

    def answer(t, answers, action):
        yield t, "/action_command", {"header": {"stamp": stamp(t), "frame_id": ""}, "action": action, "chunk": 0,
                                     "step_in_chunk": 0, "observation_stamp": stamp(answers)}

    t0 = 1_700_000_000_000_000_000
    messages = [(t0, "/instruction", {"data": "push the puck to the goal"})]
    first = [t0 + k * 50 * ms for k in range(4)]  # episode 0: steps 0..3, the last one final
    second = [first[-1] + 3 * ms + k * 50 * ms for k in range(5)]  # episode 1: steps 0..4
    for step, t in enumerate(first):
        messages += observation(t, 0, step, done=step == 3)
        if step < 3:
            messages += answer(t + 2 * ms, t, [0.1 * step, 0.0, 0.0, 1.0])
    for step, t in enumerate(second):
        messages += observation(t, 1, step, done=step == 4)
    messages += answer(second[0] + 2 * ms, first[-1], [0.9, 0.9, 0.9, 1.0])  # episode 0's final observation's
    messages += answer(second[1] + 2 * ms, second[0], [-0.5, 0.0, 0.0, 1.0])  # late: after the next observation
    for step in (1, 2, 3):
        messages += answer(second[step] + 3 * ms, second[step], [0.0, -0.1 * step, 0.0, 1.0])
    write_rosbags(tmp_path / "bag", "mcap", sorted(messages, key=lambda m: m[0]))
    summary = convert([tmp_path / "bag"], tmp_path / "data")
    assert summary.episodes == 2 and summary.unpaired_actions == 1, summary
    _, (zero, one) = load_episodes(tmp_path / "data")
    np.testing.assert_allclose(zero.actions[:, 0], [0.0, 0.1, 0.2], atol=1e-6)
    # episode 1's first observation has no answer of its own before the next one: no step (the late answer went to
    # the second observation, which its own answer then replaced)
    np.testing.assert_allclose(one.states[:, :2], [[1, 1], [1, 2], [1, 3]])
    np.testing.assert_allclose(one.actions[:, :2], [[0.0, -0.1], [0.0, -0.2], [0.0, -0.3]], atol=1e-6)


def test_sqlite3_bag_converts_and_empty_or_incomplete_bags_are_refused(tmp_path):
    images, states, actions = expert_episode()
    write_rosbags(tmp_path / "sqlite", "sqlite3", synthetic_messages(images, states, actions))
    assert convert([tmp_path / "sqlite"], tmp_path / "data").episodes == 1
    assert len(load_episodes(tmp_path / "data")[1][0].actions) == len(actions)

    write_rosbags(tmp_path / "empty", "mcap", [])
    with pytest.raises(DatasetError, match="has no messages"):
        convert([tmp_path / "empty"], tmp_path / "d2")
    no_state = {t: m for t, m in RECORDED_TOPICS.items() if t != "/robot_state"}
    write_rosbags(tmp_path / "nostate", "mcap", synthetic_messages(images, states, actions, with_state=False), no_state)
    with pytest.raises(DatasetError, match="lacks the required topic.*/robot_state"):
        convert([tmp_path / "nostate"], tmp_path / "d3")
    (tmp_path / "garbage.mcap").write_bytes(os.urandom(5000))
    with pytest.raises(DatasetError, match="not a readable MCAP"):
        convert([tmp_path / "garbage.mcap"], tmp_path / "d4")
    with pytest.raises(DatasetError, match="does not exist"):
        convert([tmp_path / "missing"], tmp_path / "d5")


def test_truncated_bag_keeps_the_complete_episodes(recorded_bag, tmp_path):
    """A recorder killed mid-episode leaves no metadata.yaml and a cut MCAP file (the writer flushes 1 MiB chunks):
    cut in the middle of the chunk that holds episode 1's end, every chunk before it whole. (Where chunks end depends
    on how long the episodes were, which depends on scheduling: a fixed cut at 90% of the file loses episode 0's
    end too once episode 0 is long enough.)"""
    from mcap.reader import make_reader

    file = next(recorded_bag.glob("*.mcap"))
    with open(file, "rb") as stream:
        chunks = make_reader(stream).get_summary().chunk_indexes
    ends = [m.log_time_ns for m in read_with_mcap_ros2(recorded_bag)
            if m.channel.topic == "/episode_status" and m.ros_msg.done]
    (first_end, last_end) = [next(c for c in chunks if c.message_start_time <= t <= c.message_end_time) for t in ends]
    assert first_end.chunk_start_offset < last_end.chunk_start_offset  # episode 1 fills more than a chunk
    source = file.read_bytes()
    cut = tmp_path / "killed"
    cut.mkdir()
    (cut / "killed.mcap").write_bytes(source[: last_end.chunk_start_offset + last_end.chunk_length // 2])
    summary = convert([cut], tmp_path / "data")
    assert summary.truncated and "stops mid-way" in summary.truncated[0]
    assert summary.episodes == 1 and summary.dropped_incomplete == 1
    assert len(load_episodes(tmp_path / "data")[1]) == 1


def test_bag2data_cli_reports_a_summary_and_errors(recorded_bag, tmp_path):
    import subprocess
    import sys

    from minivla_test_utils import ROOT

    ok = subprocess.run([sys.executable, "-m", "minivla", "bag2data", str(recorded_bag), "--out",
                         str(tmp_path / "d")], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "2 episodes" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "minivla", "bag2data", str(tmp_path / "nope"), "--out",
                          str(tmp_path / "d")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: bag")


def test_bad_values_in_a_bag_are_named_and_padded_rows_are_read_right(tmp_path):
    """Issue 10 [3], [5], [8]: a NaN action, an image whose step lies, and row padding."""
    images, states, actions = expert_episode()
    poisoned = actions.copy()
    poisoned[5, 2] = np.nan
    write_rosbags(tmp_path / "nan", "mcap", synthetic_messages(images, states, poisoned))
    with pytest.raises(DatasetError, match=r"bag .*nan, episode 0: .*action at step 5 is not finite"):
        convert([tmp_path / "nan"], tmp_path / "d1")

    def with_images(change):
        for t, topic, message in synthetic_messages(images, states, actions):
            yield t, topic, change(message) if topic == "/camera/image_raw" else message

    def padded(message):  # rows padded to a multiple of 64 bytes, as some drivers do
        rows = np.frombuffer(message["data"], np.uint8).reshape(message["height"], -1)
        step = -(-rows.shape[1] // 64) * 64
        out = np.full((message["height"], step), 255, np.uint8)
        out[:, : rows.shape[1]] = rows
        return {**message, "step": step, "data": out.tobytes()}

    write_rosbags(tmp_path / "padded", "mcap", with_images(padded))
    assert convert([tmp_path / "padded"], tmp_path / "d2").episodes == 1
    np.testing.assert_array_equal(load_episodes(tmp_path / "d2")[1][0].images[:, 0], images)
    for name, step in (("zero", 0), ("huge", 10**9)):
        write_rosbags(tmp_path / name, "mcap", with_images(lambda m: {**m, "step": step}))
        with pytest.raises(DatasetError, match=rf"bag .*{name}: message \d+ \(/camera/image_raw\): image"):
            convert([tmp_path / name], tmp_path / f"d_{name}")
