"""Any robot's bags -> a dataset (`minivla bag2data BAG --robot robot.yaml`): a bag of standard messages only,
written by an independent writer (mcap-ros2-support), each topic at its own rate, as `ros2 bag record` of a real
arm would hold it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from minivla_core.config import Bag2DataConfig, Config, RobotConfig
from minivla_core.data.dataset import load_episodes, read_index
from minivla_core.errors import ConfigError, DatasetError
from minivla_ros.bag_types import make_typestore
from minivla_ros.robot_bags import convert_robot_bags

ROOT = Path(__file__).resolve().parents[2]
TYPES = {"/camera/color/image_raw": "sensor_msgs/msg/Image", "/ee_pose": "geometry_msgs/msg/PoseStamped",
         "/joint_states": "sensor_msgs/msg/JointState", "/servo/cmd_vel": "geometry_msgs/msg/TwistStamped",
         "/gripper_command": "std_msgs/msg/Float64", "/instruction": "std_msgs/msg/String",
         "/forward_command": "std_msgs/msg/Float64MultiArray"}
ROBOT = RobotConfig(camera_topics=["/camera/color/image_raw"], state_type="PoseAndJoints", state_pose_topic="ee_pose",
                    state_joint_topic="joint_states", state_joints=["gripper"], action_type="TwistStamped",
                    action_topic="servo/cmd_vel", velocity_scale=0.2, gripper_topic="gripper_command")
T0 = 1_700_000_000.0


def stamp(t: float) -> dict:
    ns = int(round(t * 1e9))
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def robot_messages():
    """Two demonstrations 2 s apart: 2 s moving +x at 0.1 m/s, then 1.5 s moving +y; camera at 15 Hz (80x60 bgr8,
    brightness = tenths of a second since the start), pose and joints at 50 Hz, commands at 10 Hz."""
    episodes = [(0.0, 2.0, (0.1, 0.0)), (4.0, 5.5, (0.0, 0.1))]
    yield 0.0, "/instruction", {"data": "push the block"}
    position = np.array([0.0, 0.6, 0.2])
    events = []
    for t in np.arange(0.0, 6.0, 1 / 15):
        shade = np.full((60, 80, 3), int(10 * t) % 256, np.uint8)
        events.append((t, "/camera/color/image_raw", {"header": {"stamp": stamp(T0 + t), "frame_id": "cam"},
                                                      "height": 60, "width": 80, "encoding": "bgr8", "is_bigendian": 0,
                                                      "step": 240, "data": shade.tobytes()}))
    for t in np.arange(0.0, 6.0, 1 / 10):
        for start, end, (vx, vy) in episodes:
            if start <= t < end:
                header = {"stamp": stamp(T0 + t), "frame_id": "world"}
                events.append((t, "/servo/cmd_vel", {"header": header, "twist": {
                    "linear": {"x": vx, "y": vy, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}}))
                events.append((t, "/gripper_command", {"data": 1.0}))
    for t in np.arange(0.0, 6.0, 1 / 50):
        velocity = next(((vx, vy) for start, end, (vx, vy) in episodes if start <= t < end), (0.0, 0.0))
        position = position + np.array([*velocity, 0.0]) / 50
        header = {"stamp": stamp(T0 + t), "frame_id": "world"}
        events.append((t, "/ee_pose", {"header": header, "pose": {
            "position": dict(zip("xyz", position.tolist())), "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}}))
        events.append((t, "/joint_states", {"header": header, "name": ["wrist", "gripper", "elbow"],
                                            "position": [0.1, 0.5, 0.2], "velocity": [], "effort": []}))
    yield from sorted(events, key=lambda e: e[0])


def write_bag(path: Path, drop: str = "") -> Path:
    from mcap_ros2.writer import Writer

    typestore = make_typestore()
    with open(path, "wb") as stream:
        writer = Writer(stream)
        schemas = {topic: writer.register_msgdef(msgtype, typestore.generate_msgdef(msgtype, ros_version=2)[0])
                   for topic, msgtype in TYPES.items()}
        for t, topic, message in robot_messages():
            if topic != drop:
                ns = int((T0 + t) * 1e9)
                writer.write_message(topic, schemas[topic], message, log_time=ns, publish_time=ns)
        writer.finish()
    return path


def write_events(path: Path, events: list) -> Path:
    """(seconds from T0, topic, message) events, in time order, as an MCAP file (log time = the event's time)."""
    from mcap_ros2.writer import Writer

    typestore = make_typestore()
    types = {**TYPES, "/episode": "std_msgs/msg/Header", "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}
    with open(path, "wb") as stream:
        writer = Writer(stream)
        schemas = {topic: writer.register_msgdef(msgtype, typestore.generate_msgdef(msgtype, ros_version=2)[0])
                   for topic, msgtype in types.items()}
        for t, topic, message in sorted(events, key=lambda e: e[0]):
            ns = int(round((T0 + t) * 1e9))
            writer.write_message(topic, schemas[topic], message, log_time=ns, publish_time=ns)
        writer.finish()
    return path


def test_a_robot_bag_of_standard_messages_becomes_two_episodes(tmp_path):
    bag = write_bag(tmp_path / "arm.mcap")
    summary = convert_robot_bags([bag], tmp_path / "data", ROBOT, Bag2DataConfig(rate=20.0), image_size=32)
    assert summary.episodes == 2, summary
    meta, episodes = load_episodes(tmp_path / "data")
    assert meta["image_size"] == 32 and meta["state_dim"] == 4
    first, second = episodes
    # 2 s and 1.5 s of commands at 20 ticks/s, the last command held 0.25 s (a velocity controller's time-out)
    assert 40 <= len(first.actions) <= 45 and 30 <= len(second.actions) <= 35, summary
    np.testing.assert_allclose(first.actions, np.tile([0.5, 0.0, 0.0, 1.0], (len(first.actions), 1)), atol=1e-6)
    np.testing.assert_allclose(second.actions, np.tile([0.0, 0.5, 0.0, 1.0], (len(second.actions), 1)),
                               atol=1e-6)
    # state: pose x, y, z then the gripper joint, sampled every 1/20 s (the hand moves 5 mm per sample)
    np.testing.assert_allclose(np.diff(first.states[:40, 0]), 0.005, atol=0.0021)  # (the last ones: the hand stopped)
    np.testing.assert_allclose(first.states[:, 3], 0.5)
    assert first.images.shape[1:] == (1, 32, 32, 3)
    shades = first.images[:, 0, 0, 0, 0].astype(int)  # the newest frame at each tick: shades never go back
    assert np.all(np.diff(shades) >= 0) and shades[-1] > shades[0]
    assert first.instruction == "push the block"


def test_a_robot_with_no_gripper_gives_actions_of_three_numbers(tmp_path):
    """No gripper topic in the bag or the robot section: each action is the twist's x, y, z (issue 23: refused with
    "a TwistStamped command carries 3 numbers ... the policy's action has 4")."""
    bag = write_bag(tmp_path / "arm.mcap", drop="/gripper_command")
    no_gripper = RobotConfig(**{**ROBOT.__dict__, "gripper_topic": ""})
    summary = convert_robot_bags([bag], tmp_path / "data", no_gripper, Bag2DataConfig(rate=20.0), image_size=32)
    assert summary.episodes == 2, summary
    meta, (first, second) = load_episodes(tmp_path / "data")
    assert meta["action_dim"] == 3
    np.testing.assert_allclose(first.actions, np.tile([0.5, 0.0, 0.0], (len(first.actions), 1)), atol=1e-6)
    np.testing.assert_allclose(second.actions, np.tile([0.0, 0.5, 0.0], (len(second.actions), 1)), atol=1e-6)


def test_a_command_array_gives_actions_of_its_own_length_and_a_change_of_length_is_named(tmp_path):
    """Float64MultiArray and no gripper topic: an action is the array, as long as the robot's commands are (here 2
    joint velocities); a command of another length in the same bag is refused by name."""
    array = RobotConfig(**{**ROBOT.__dict__, "action_type": "Float64MultiArray", "action_topic": "forward_command",
                           "gripper_topic": ""})

    def events(lengths):
        found = [(0.0, "/instruction", {"data": "wave"})]
        for i, t in enumerate(np.arange(0.0, 1.0, 0.05)):
            found += frame_events(t, 0.0)[:3]
            found.append((t + 0.01, "/forward_command", {"layout": {"dim": [], "data_offset": 0},
                                                         "data": [0.25] * lengths(i)}))
        return found

    bag = write_events(tmp_path / "array.mcap", events(lambda i: 2))
    convert_robot_bags([bag], tmp_path / "data", array, Bag2DataConfig(rate=0.0), image_size=32)
    meta, (episode,) = load_episodes(tmp_path / "data")
    assert meta["action_dim"] == 2 and np.all(episode.actions == 0.25)
    changed = write_events(tmp_path / "changed.mcap", events(lambda i: 2 if i < 10 else 3))
    with pytest.raises(DatasetError, match="changed.mcap.*action of 3 numbers, the ones before 2"):
        convert_robot_bags([changed], tmp_path / "other", array, Bag2DataConfig(rate=0.0), image_size=32)


def test_robot_bag_problems_are_named(tmp_path):
    bag = write_bag(tmp_path / "arm.mcap")
    wrong_joint = RobotConfig(**{**ROBOT.__dict__, "state_joints": ["finger"]})
    with pytest.raises(DatasetError, match="arm.mcap.*lacks joint.s. finger \\(it has wrist, gripper, elbow\\)"):
        convert_robot_bags([bag], tmp_path / "a", wrong_joint, Bag2DataConfig(), image_size=32)
    no_gripper = write_bag(tmp_path / "no_gripper.mcap", drop="/gripper_command")
    with pytest.raises(DatasetError, match="no_gripper.mcap lacks the topic.s. /gripper_command"):
        convert_robot_bags([no_gripper], tmp_path / "b", ROBOT, Bag2DataConfig(), image_size=32)
    no_words = write_bag(tmp_path / "silent.mcap", drop="/instruction")
    with pytest.raises(DatasetError, match="silent.mcap: an episode has no instruction"):
        convert_robot_bags([no_words], tmp_path / "c", ROBOT, Bag2DataConfig(), image_size=32)
    summary = convert_robot_bags([no_words], tmp_path / "d", ROBOT, Bag2DataConfig(instruction="push it"),
                                 image_size=32)
    assert summary.episodes == 2


def test_a_robot_state_of_any_size_trains_and_drives_the_policy(tmp_path):
    """Three named joints and no pose: the dataset is of the "robot" protocol with 3-number states, `minivla train`
    takes it once told (env.observation robot), and the checkpoint fits the same robot section."""
    from minivla_core.checkpoint import load_policy
    from minivla_core.model.policy import PolicyRunner
    from minivla_ros.interfaces import check_interface

    bag = write_bag(tmp_path / "arm.mcap")
    joints = RobotConfig(**{**ROBOT.__dict__, "state_pose_topic": "", "state_joints": ["wrist", "gripper", "elbow"]})
    convert_robot_bags([bag], tmp_path / "data", joints, Bag2DataConfig(), image_size=32)
    meta, episodes = load_episodes(tmp_path / "data")
    assert (meta["observation"], meta["state_dim"]) == ("robot", 3)
    np.testing.assert_allclose(episodes[0].states[0], [0.1, 0.5, 0.2], atol=1e-6)
    train = [sys.executable, "-m", "minivla", "train", "--dataset", str(tmp_path / "data"), "--out",
             str(tmp_path / "run"), "--image-size", "32", "--epochs", "2", "--set", "model.d_model=32", "--set",
             "model.denoiser_hidden=64", "--set", "train.val_fraction=0.5"]
    refused = subprocess.run(train, capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "env.observation to 'robot'" in refused.stderr, refused.stderr
    done = subprocess.run([*train, "--observation", "robot"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    policy, payload = load_policy(tmp_path / "run" / "best.pt")
    assert payload["state_dim"] == 3 and payload["env"]["observation"] == "robot"
    check_interface(joints, policy.action_dim, payload["state_dim"], 1)
    action = PolicyRunner(policy, "push the block").act(np.zeros((1, 32, 32, 3), np.uint8), np.array([0.1, 0.5, 0.2]))
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)


def test_minivla_bag2data_reads_a_robot_yaml(tmp_path):
    bag = write_bag(tmp_path / "arm.mcap")
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump({"robot": ROBOT.__dict__}))
    done = subprocess.run([sys.executable, "-m", "minivla", "bag2data", str(bag), "--robot",
                           str(tmp_path / "robot.yaml"), "--out", str(tmp_path / "data"), "--image-size", "32",
                           "--set", "bag2data.episode_gap=0"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "1 episodes" in done.stdout  # episode_gap 0: the whole bag is one episode


def test_no_command_of_an_episode_labels_a_frame_of_the_next(tmp_path):
    """A simulator re-sends an episode's first frame until its first command comes. At the episode marker the last
    episode's commands are over: those frames are no steps, though its final command is younger than `stale`."""
    events = [(0.0, "/instruction", {"data": "push the block"}),
              (0.0, "/episode", {"stamp": stamp(T0), "frame_id": ""}),
              (1.0, "/episode", {"stamp": stamp(T0 + 1.0), "frame_id": ""})]
    for t in np.arange(0.0, 2.0, 0.05):
        header = {"stamp": stamp(T0 + t), "frame_id": "world"}
        events.append((t, "/camera/color/image_raw", {"header": header, "height": 60, "width": 80, "encoding": "bgr8",
                                                      "is_bigendian": 0, "step": 240,
                                                      "data": np.zeros((60, 80, 3), np.uint8).tobytes()}))
        pose = {"position": {"x": 0.0, "y": 0.6, "z": 0.2}, "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}
        events.append((t, "/ee_pose", {"header": header, "pose": pose}))
        events.append((t, "/joint_states", {"header": header, "name": ["gripper"], "position": [0.5], "velocity": [],
                                            "effort": []}))
        if t < 0.97 or t > 1.17:  # the second episode's first three frames wait for its first command
            velocity = {"x": 0.1, "y": 0.0, "z": 0.0} if t < 1.0 else {"x": 0.0, "y": 0.1, "z": 0.0}
            answer = t + 0.01  # each command answers its frame 10 ms later
            events.append((answer, "/servo/cmd_vel", {"header": {"stamp": stamp(T0 + answer), "frame_id": "world"},
                                                      "twist": {"linear": velocity,
                                                                "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}}))
            events.append((answer, "/gripper_command", {"data": 1.0}))
    options = Bag2DataConfig(rate=0.0, episode_topic="/episode")
    summary = convert_robot_bags([write_events(tmp_path / "sim.mcap", events)], tmp_path / "data", ROBOT, options,
                                 image_size=32)
    assert summary.episodes == 2, summary
    _, (first, second) = load_episodes(tmp_path / "data")
    assert np.all(first.actions[:, :2] == [0.5, 0.0]) and 19 <= len(first.actions) <= 20
    assert np.all(second.actions[:, :2] == [0.0, 0.5]), second.actions  # no +x of the first episode
    assert 16 <= len(second.actions) <= 17  # the frames from 1.15 s (answered at 1.2 s) to 1.95 s


def frame_events(t: float, x: float) -> list:
    """One frame at t: camera, hand at (x, 0.6, 0.2) and gripper joint, all stamped t."""
    header = {"stamp": stamp(T0 + t), "frame_id": "world"}
    pose = {"position": {"x": x, "y": 0.6, "z": 0.2}, "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}
    return [(t, "/camera/color/image_raw", {"header": header, "height": 60, "width": 80, "encoding": "bgr8",
                                            "is_bigendian": 0, "step": 240,
                                            "data": np.zeros((60, 80, 3), np.uint8).tobytes()}),
            (t, "/ee_pose", {"header": header, "pose": pose}),
            (t, "/joint_states", {"header": header, "name": ["gripper"], "position": [0.5], "velocity": [],
                                  "effort": []})]


def command_events(t: float, vx: float, vy: float) -> list:
    header = {"stamp": stamp(T0 + t), "frame_id": "world"}
    return [(t, "/servo/cmd_vel", {"header": header, "twist": {"linear": {"x": vx, "y": vy, "z": 0.0},
                                                               "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}}),
            (t, "/gripper_command", {"data": 1.0})]


@pytest.mark.parametrize("rate", [0.0, 20.0])
def test_an_episodes_frames_stay_in_it_at_the_marker(tmp_path, rate):
    """Each frame is an observation of the episode it was stamped in, with a command of that episode, however close
    the marker follows it. Per frame: a simulator publishes an episode's final frame and the next one's first (with
    its marker) 3 ms apart, and the answer to the final frame comes after both, so no message lies between the final
    frame and the marker (it used to be observed after the marker, in the next episode, and lost there: whether an
    episode kept its final frame depended on scheduling). At a fixed rate: an operator's first command of the new
    episode comes before its first frame (the old episode's last frame, still the newest, used to fill the ticks
    after the marker and take that command)."""
    first_frames = np.arange(0.0, 0.96, 0.05)  # the hand at x = t: a frame is known by its position
    second_frames = 1.003 + np.arange(0.0, 0.5, 0.05) if rate == 0 else 1.2 + np.arange(0.0, 0.5, 0.05)
    second_start = 1.003 if rate == 0 else 1.1  # the marker: with the first frame, or before the first command
    events = [(0.0, "/instruction", {"data": "push the block"})]
    events += [(start, "/episode", {"stamp": stamp(T0 + start), "frame_id": ""}) for start in (0.0, second_start)]
    for t in first_frames:  # each answered 10 ms later; the final one after the next episode's first frame
        events += frame_events(t, t) + command_events(t + 0.01 if t < 0.9 else 1.006, 0.1, 0.0)
    for t in second_frames:
        events += frame_events(t, 5.0 + t) + command_events(t + 0.01, 0.0, 0.1)
    if rate > 0:
        events += command_events(1.15, 0.0, 0.1)  # the new episode's first command, before its first frame
    options = Bag2DataConfig(rate=rate, episode_topic="/episode")
    summary = convert_robot_bags([write_events(tmp_path / "sim.mcap", events)], tmp_path / "data", ROBOT, options,
                                 image_size=32)
    assert summary.episodes == 2, summary
    _, (first, second) = load_episodes(tmp_path / "data")
    assert np.all(first.states[:, 0] < 1.0) and np.all(first.actions[:, :2] == [0.5, 0.0])
    assert np.all(second.states[:, 0] > 5.0), second.states[:, 0]  # no frame of the first episode
    assert np.all(second.actions[:, :2] == [0.0, 0.5]), second.actions
    if rate == 0:  # one step per frame, the final one included: it is labelled with the command then in force
        np.testing.assert_allclose(first.states[:, 0], first_frames, atol=1e-6)
        assert len(second.actions) == len(second_frames)


# --- issue 23: bag2data's rules said, set or refused; errors that name the topic at fault --------------------------

def test_a_missing_joint_is_named_on_the_joint_state_topic(tmp_path):
    """The joints are read when a tick is observed, which a message on another topic (the pose, a gripper command)
    sets off: the error names the topic the joint is missing from, not that one."""
    wrong_joint = RobotConfig(**{**ROBOT.__dict__, "state_joints": ["finger"]})
    with pytest.raises(DatasetError, match=r"arm\.mcap, topic /joint_states: joint state lacks joint\(s\) finger"):
        convert_robot_bags([write_bag(tmp_path / "arm.mcap")], tmp_path / "a", wrong_joint, Bag2DataConfig(),
                           image_size=32)


def marked_episodes(results: dict[int, str] | None = None, late: tuple[int, ...] = ()) -> list:
    """Three episodes a second apart (markers on /episode), each of frames every 50 ms for 0.9 s answered 10 ms later
    (the hand at x = 10 * episode + t); `results`: episode -> its success value ("True", "False") in a
    sim_bridge-style DiagnosticArray on /diagnostics, stamped as its final frame, or (episodes in `late`) 30 ms after
    the next episode's marker."""
    events = [(0.0, "/instruction", {"data": "push the block"})]
    for episode in range(3):
        start = float(episode)
        events.append((start, "/episode", {"stamp": stamp(T0 + start), "frame_id": ""}))
        frames = start + np.arange(0.0, 0.9, 0.05)
        for t in frames:
            events += frame_events(t, 10 * episode + t - start) + command_events(t + 0.01, 0.1, 0.0)
        if results and episode in results:
            at = start + 1.03 if episode in late else frames[-1]
            status = {"level": 0, "name": "sim_bridge: episode", "message": "", "hardware_id": "sim_bridge",
                      "values": [{"key": "episode", "value": str(episode)},
                                 {"key": "success", "value": results[episode]}]}
            events.append((at, "/diagnostics", {"header": {"stamp": stamp(T0 + at), "frame_id": ""},
                                                "status": [status]}))
    return events


def test_episode_results_on_diagnostics_decide_what_is_kept(tmp_path):
    """The simulator bridge (bridge.interface standard) says how each episode ended on /diagnostics: a failed one is
    dropped unless keep_failed, even when its result comes after the next episode's marker."""
    bag = write_events(tmp_path / "sim.mcap", marked_episodes({0: "True", 1: "False", 2: "True"}, late=(1,)))
    summary = convert_robot_bags([bag], tmp_path / "kept", ROBOT, Bag2DataConfig(rate=0.0, episode_topic="/episode"),
                                 image_size=32)
    assert (summary.episodes, summary.failed_dropped, summary.success_unknown) == (2, 1, 0), summary
    _, episodes = load_episodes(tmp_path / "kept")
    assert [int(e.states[0, 0] // 10) for e in episodes] == [0, 2]  # the failed second one is gone
    assert [entry["success"] for entry in read_index(tmp_path / "kept")] == [True, True]
    options = Bag2DataConfig(rate=0.0, episode_topic="/episode", keep_failed=True)
    summary = convert_robot_bags([bag], tmp_path / "all", ROBOT, options, image_size=32)
    assert summary.episodes == 3 and "1 failed" not in str(summary)
    assert [entry["success"] for entry in read_index(tmp_path / "all")] == [True, False, True]


def test_episodes_without_a_result_are_kept_as_success_unknown(tmp_path):
    bag = write_events(tmp_path / "quiet.mcap", marked_episodes({0: "False"}))
    summary = convert_robot_bags([bag], tmp_path / "data", ROBOT, Bag2DataConfig(rate=0.0, episode_topic="/episode"),
                                 image_size=32)
    assert (summary.episodes, summary.failed_dropped, summary.success_unknown) == (2, 1, 2), summary
    assert [entry["success"] for entry in read_index(tmp_path / "data")] == [None, None]
    assert "2 of them with success unknown" in str(summary)
    assert "quiet.mcap: 2 episode(s) kept as success unknown" in str(summary), summary


def test_a_marker_topic_the_bag_lacks_is_refused(tmp_path):
    """Misnamed, the markers used to be ignored: three episodes became one, with exit 0."""
    bag = write_events(tmp_path / "sim.mcap", marked_episodes())
    options = Bag2DataConfig(rate=0.0, episode_topic="/episode_start")
    with pytest.raises(DatasetError, match=r"sim\.mcap has no message on /episode_start, the episode marker topic "
                                           r"\(bag2data\.episode_topic\).*its topics: .*/episode, "):
        convert_robot_bags([bag], tmp_path / "a", ROBOT, options, image_size=32)
    assert not (tmp_path / "a").exists()
    summary = convert_robot_bags([bag], tmp_path / "b", ROBOT, Bag2DataConfig(rate=0.0, episode_gap=0.0),
                                 image_size=32)  # episode_topic empty: no markers asked for, one episode per bag
    assert summary.episodes == 1


def test_observations_before_the_first_marker_are_dropped_and_counted(tmp_path):
    events = [(0.0, "/instruction", {"data": "push the block"}),
              (0.5, "/episode", {"stamp": stamp(T0 + 0.5), "frame_id": ""})]
    for t in np.arange(0.0, 1.5, 0.05):
        events += frame_events(t, t) + command_events(t + 0.01, 0.1, 0.0)
    summary = convert_robot_bags([write_events(tmp_path / "late.mcap", events)], tmp_path / "data", ROBOT,
                                 Bag2DataConfig(rate=0.0, episode_topic="/episode"), image_size=32)
    assert summary.episodes == 1, summary
    _, (episode,) = load_episodes(tmp_path / "data")
    assert episode.states[0, 0] == pytest.approx(0.5)  # the first frame of the marked episode
    assert "late.mcap: 10 observations before the first message on /episode belong to no episode" in str(summary)


def sparse_commands(tmp_path, stale_after: float) -> int:
    """Frames every 50 ms for 2 s, a command every 0.4 s: how many frames are steps at this freshness window."""
    events = [(0.0, "/instruction", {"data": "push the block"})]
    for t in np.arange(0.0, 2.0, 0.05):
        events += frame_events(t, t)
    for t in np.arange(0.01, 2.0, 0.4):
        events += command_events(t, 0.1, 0.0)
    bag = write_events(tmp_path / f"sparse{stale_after}.mcap", events)
    options = Bag2DataConfig(rate=0.0, episode_gap=0.0, stale_after=stale_after)
    return convert_robot_bags([bag], tmp_path / f"data{stale_after}", ROBOT, options, image_size=32).steps


def test_the_freshness_window_of_commands_is_a_setting(tmp_path):
    """A frame's label is the command in force at the next frame, if no older than bag2data.stale_after then."""
    # every frame but the bag's last (nothing after it shows that all its inputs are in): no command is older than
    # 0.4 s at a frame
    assert sparse_commands(tmp_path, 0.5) == 39
    assert 20 <= sparse_commands(tmp_path, 0.25) <= 27  # about 5 of each 8 frames after a command
    with pytest.raises(ConfigError, match="bag2data.stale_after must be > 0"):
        Config.from_dict({"bag2data": {"stale_after": 0}})


def test_header_stamps_going_backwards_are_refused(tmp_path):
    """A clock reset one second in: the stamps start again from 0. Paired by stamp, the bag used to give a few short
    episodes, and exit 0."""
    events = [(0.0, "/instruction", {"data": "push the block"})]
    for t in np.arange(0.0, 1.0, 0.05):
        events += frame_events(t, t) + command_events(t + 0.01, 0.1, 0.0)
    for t in np.arange(0.0, 1.0, 0.05):  # logged 3 s on, stamped as before
        again = frame_events(t, 1 + t) + command_events(t + 0.01, 0.1, 0.0)
        events += [(log + 3.0, topic, msg) for log, topic, msg in again]
    with pytest.raises(DatasetError, match=r"reset\.mcap: header stamps go backwards on /camera/color/image_raw 1 "
                                           r"time\(s\), by up to 0\.9\d0 s; on /ee_pose 1 time"):
        convert_robot_bags([write_events(tmp_path / "reset.mcap", events)], tmp_path / "data", ROBOT,
                           Bag2DataConfig(rate=0.0, episode_gap=0.0), image_size=32)


def test_robot_and_config_read_the_same_sections_of_a_file(tmp_path):
    """`--robot FILE` used to read only FILE's robot section (its bag2data and env sections were ignored)."""
    def bag2data(*args):
        return subprocess.run([sys.executable, "-m", "minivla", "bag2data", *map(str, args)], capture_output=True,
                              text=True, cwd=ROOT)

    bag = write_bag(tmp_path / "arm.mcap")
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump({"robot": ROBOT.__dict__, "env": {"image_size": 24},
                                                         "bag2data": {"episode_gap": 0.0}}))
    for flag in ("--robot", "--config"):
        done = bag2data(bag, flag, tmp_path / "robot.yaml", "--out", tmp_path / flag.strip("-"))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("1 episodes"), done.stdout  # the file's episode_gap 0: one episode per bag
        assert load_episodes(tmp_path / flag.strip("-"))[0]["image_size"] == 24
    overridden = bag2data(bag, "--robot", tmp_path / "robot.yaml", "--set", "bag2data.episode_gap=1.0", "--out",
                          tmp_path / "set")
    assert overridden.stdout.startswith("2 episodes"), overridden.stdout + overridden.stderr  # --set wins
    (tmp_path / "no_robot.yaml").write_text(yaml.safe_dump({"bag2data": {"episode_gap": 0.0}}))
    refused = bag2data(bag, "--robot", tmp_path / "no_robot.yaml", "--out", tmp_path / "x")
    assert refused.returncode == 2 and "has no `robot` section" in refused.stderr, refused.stderr
    help_text = bag2data("--help").stdout
    assert "--robot FILE, or --config FILE: both read every section" in " ".join(help_text.split())
