"""The real Meta-World env wrapper and the on-disk dataset format."""

import json

import numpy as np
import pytest

from minivla_core.config import CollectConfig, EnvConfig
from minivla_core.data.collect import collect, run_expert_episode
from minivla_core.data.dataset import DatasetWriter, load_episodes, read_index
from minivla_core.envs.metaworld_env import MetaWorldEnv, check_task, instruction_for, make_expert
from minivla_core.errors import ConfigError, DatasetError, TaskError


@pytest.fixture(scope="module")
def env():
    with MetaWorldEnv(EnvConfig(image_size=32)) as env:
        yield env


def test_reset_and_step_give_upright_images_and_proprio_states(env):
    obs = env.reset(0)
    assert obs.image.shape == (32, 32, 3) and obs.image.dtype == np.uint8
    assert obs.image.flags["C_CONTIGUOUS"]
    # the policy's state is the hand position and gripper only; the goal and the puck are not in it
    assert obs.state.shape == (4,) and obs.state.dtype == np.float32
    np.testing.assert_array_equal(obs.state, obs.privileged[:4])
    assert obs.privileged.shape == (39,) and np.any(obs.privileged[-3:] != 0)  # for the expert only
    after = env.step(np.array([1.0, 0.0, 0.0, 0.0]))
    assert after.step == 1 and after.state[0] > obs.state[0]  # moved along +x


def test_images_are_upright_and_the_moved_camera_fills_the_frame_with_the_table():
    def table_share(image):  # the table top is brown: red clearly above blue
        rgb = image.astype(int)
        return np.mean((rgb[..., 0] - rgb[..., 2] > 25) & (rgb[..., 0] < 200))

    with (MetaWorldEnv(EnvConfig(image_size=32)) as moved,
          MetaWorldEnv(EnvConfig(image_size=32, camera_position=[])) as far):
        near_image, far_image = moved.reset(0).image, far.reset(0).image
    assert table_share(near_image) > 1.5 * table_share(far_image)
    # Upright: with the scene's own placement corner2 sees the table and floor (bright) in the lower
    # half and the dark background in the upper half; rendered raw it would be the other way round.
    brightness = far_image.mean(axis=(1, 2))
    assert brightness[16:].mean() > brightness[:16].mean()


def test_full_observation_is_the_privileged_state_and_bad_names_are_refused():
    from minivla_core.errors import ConfigError

    with MetaWorldEnv(EnvConfig(image_size=16, observation="full")) as env:
        obs = env.reset(0)
        assert obs.state.shape == (39,) and env.state_dim == 39
        np.testing.assert_array_equal(obs.state, obs.privileged)
    with pytest.raises(ConfigError, match="unknown observation protocol 'proprioception'.*'proprio'"):
        MetaWorldEnv(EnvConfig(observation="proprioception"))
    with pytest.raises(TaskError, match="camera_position must be 3 numbers"):
        MetaWorldEnv(EnvConfig(camera_position=[1.0, 2.0]))


def test_layouts_depend_only_on_seed_and_episode(env):
    first = env.reset(3).privileged.copy()
    env.reset(4)
    assert np.array_equal(env.reset(3).privileged, first)
    with MetaWorldEnv(EnvConfig(image_size=32, seed=1000)) as other:
        assert not np.allclose(other.reset(3).privileged[-3:], first[-3:])  # unseen goal for another seed


def test_expert_solves_push(env):
    expert = make_expert("push-v3")
    obs = env.reset(0)
    while not obs.success and not env.done:
        obs = env.step(np.clip(expert.get_action(obs.privileged), -1, 1))
    assert obs.success and env.step_count < 200


def test_bad_task_camera_and_action_are_named():
    with pytest.raises(TaskError, match="unknown Meta-World task 'psuh-v3'.*push-v3"):
        check_task("psuh-v3")
    with pytest.raises(TaskError, match="unknown camera 'nope'"):
        MetaWorldEnv(EnvConfig(camera="nope"))
    assert instruction_for("push-v3") == "push the puck to the goal"
    assert instruction_for("sweep-into-v3") == "sweep into"


def test_invalid_action_is_refused_never_clipped(env):
    env.reset(0)
    for action, message in (([np.nan, 0, 0, 0], "NaN or infinite values at \\[0\\]"), (np.zeros(3), "has 3 numbers"),
                            ([1e9, 0, 0, 0], "outside the limits"), ([0, 0, 3e38, 0], "outside the limits"),
                            ([0, 0, 0, -1.01], "outside the limits")):
        with pytest.raises(ValueError, match=message):
            env.step(np.asarray(action, dtype=np.float64))
    assert env.step_count == 0  # no refused action was stepped
    env.step(np.array([1.0, -1.0, 1.0, -1.0]))  # the limits themselves are valid


def test_collected_dataset_is_on_disk_and_loads(two_episode_dataset):
    meta, episodes = load_episodes(two_episode_dataset)
    assert meta["image_size"] == 32 and len(episodes) == 2
    assert meta["observation"] == "proprio" and meta["state_dim"] == 4
    assert meta["camera"] == {"name": "corner2", "position": [0.75, 0.075, 0.7]}
    index = read_index(two_episode_dataset)
    for entry, episode in zip(index, episodes):
        assert entry["success"] and entry["task"] == "push-v3"
        assert episode.images.shape == (entry["steps"], 1, 32, 32, 3) and episode.states.shape == (entry["steps"], 4)
        assert np.abs(episode.actions).max() <= 1.0
        assert episode.instruction == "push the puck to the goal"


def test_writer_appends_and_refuses_other_shapes(tmp_path):
    with DatasetWriter(tmp_path / "d", image_size=8, state_dim=3, action_dim=2, observation="proprio") as writer:
        writer.append(np.zeros((5, 8, 8, 3)), np.zeros((5, 3)), np.zeros((5, 2)), task="t", instruction="do it")
    again = DatasetWriter(tmp_path / "d", image_size=8, state_dim=3, action_dim=2, observation="proprio")
    again.append(np.ones((2, 8, 8, 3)), np.ones((2, 3)), np.ones((2, 2)) / 2, task="t", instruction="do it")
    assert [len(e.actions) for e in load_episodes(tmp_path / "d")[1]] == [5, 2]
    with pytest.raises(DatasetError, match="expected"):
        again.append(np.zeros((2, 8, 8, 3)), np.zeros((3, 3)), np.zeros((2, 2)), task="t", instruction="x")
    again.close()
    with pytest.raises(DatasetError, match="another shape"):
        DatasetWriter(tmp_path / "d", image_size=16, state_dim=3, action_dim=2, observation="proprio")
    with pytest.raises(DatasetError, match="another shape"):
        DatasetWriter(tmp_path / "d", image_size=8, state_dim=3, action_dim=2, observation="full")


def test_missing_truncated_and_empty_datasets_are_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_episodes(tmp_path / "nowhere")
    writer = DatasetWriter(tmp_path / "d", image_size=8, state_dim=3, action_dim=2, observation="proprio")
    with pytest.raises(DatasetError, match="no episodes"):
        load_episodes(tmp_path / "d")
    path = writer.append(np.zeros((5, 8, 8, 3)), np.zeros((5, 3)), np.zeros((5, 2)), task="t", instruction="x")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="000000.npz is unreadable or truncated"):
        load_episodes(tmp_path / "d")
    path.unlink()
    with pytest.raises(DatasetError, match="file is missing"):
        load_episodes(tmp_path / "d")
    (tmp_path / "d" / "episodes.jsonl").write_text(json.dumps({"file": "x"})[:7] + "\n")
    with pytest.raises(DatasetError, match="line 1 is not valid JSON"):
        load_episodes(tmp_path / "d")


def test_paraphrases_hold_some_out_of_training():
    from minivla_core.envs.metaworld_env import INSTRUCTIONS, paraphrases

    assert len(INSTRUCTIONS) >= 6
    for task in INSTRUCTIONS:
        train, held_out = paraphrases(task), paraphrases(task, held_out=True)
        assert len(train) >= 3 and len(held_out) == 2 and not set(train) & set(held_out)
        assert instruction_for(task) == train[0]
    assert paraphrases("sweep-into-v3", held_out=True) == []


def test_multi_task_collection_labels_episodes_with_paraphrases(tmp_path):
    from minivla_core.envs.metaworld_env import paraphrases

    config = CollectConfig(out=str(tmp_path / "d"), episodes=2, tasks=["reach-v3", "push-v3"], paraphrases=True)
    assert collect(EnvConfig(image_size=32), config, progress=False).kept == 4
    index = read_index(tmp_path / "d")
    assert [e["task"] for e in index] == ["reach-v3", "reach-v3", "push-v3", "push-v3"]
    assert [e["instruction"] for e in index[:2]] == paraphrases("reach-v3")[:2]


def test_collection_can_record_the_expert_past_its_first_success(tmp_path):
    """collect.steps_after_success: the episode goes on N steps after success (the hand settling at the goal)."""
    with MetaWorldEnv(EnvConfig(task="reach-v3", image_size=16)) as env:
        expert = make_expert("reach-v3")
        _, _, stopped, success = run_expert_episode(env, expert, 0)
        _, _, settled, success_later = run_expert_episode(env, expert, 0, steps_after_success=10)
    stopped, settled = np.stack(stopped), np.stack(settled)
    assert success and success_later
    assert len(settled) == len(stopped) + 10
    np.testing.assert_array_equal(settled[: len(stopped)], stopped)  # the same episode, only longer
    # the expert slows down at the goal: the recorded extra steps move the hand less than the approach did
    assert np.abs(settled[-5:, :3]).mean() < np.abs(stopped[-5:, :3]).mean()
    with pytest.raises(ConfigError, match="steps_after_success must be >= 0"):
        collect(EnvConfig(image_size=16), CollectConfig(out=str(tmp_path / "d"), episodes=1, steps_after_success=-1),
                progress=False)


def test_workers_record_the_same_episodes_as_one_process(tmp_path):
    """collect.workers: each task's episodes (layouts, instructions, frames) do not depend on which process ran it;
    LeRobot's descriptions label them when asked."""
    from minivla_core.envs.metaworld_suites import lerobot_description

    tasks = ["reach-v3", "drawer-close-v3", "button-press-v3"]
    for name, workers in (("one", 1), ("two", 2)):
        config = CollectConfig(out=str(tmp_path / name), episodes=2, tasks=tasks, lerobot_descriptions=True,
                               workers=workers)
        result = collect(EnvConfig(image_size=16), config, progress=False)
        assert result.kept == 6 and set(result.tasks) == set(tasks)
    one, two = load_episodes(tmp_path / "one")[1], load_episodes(tmp_path / "two")[1]
    entries = {name: read_index(tmp_path / name) for name in ("one", "two")}
    key = lambda entry: (entry["task"], entry["episode"])  # noqa: E731
    by_layout = {name: {key(e): i for i, e in enumerate(entries[name])} for name in entries}
    assert set(by_layout["one"]) == set(by_layout["two"])
    for layout, i in by_layout["one"].items():
        j = by_layout["two"][layout]
        assert one[i].instruction == two[j].instruction == lerobot_description(layout[0])
        np.testing.assert_array_equal(one[i].images, two[j].images)
        np.testing.assert_array_equal(one[i].actions, two[j].actions)


def test_collect_refuses_paraphrases_and_lerobot_descriptions_together(tmp_path):
    with pytest.raises(ConfigError, match="set one of them"):
        collect(EnvConfig(image_size=16), CollectConfig(out=str(tmp_path / "d"), paraphrases=True,
                                                        lerobot_descriptions=True), progress=False)
    assert not (tmp_path / "d").exists()
