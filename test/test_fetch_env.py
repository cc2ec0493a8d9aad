"""The second robot's simulator (Fetch pushing a block): real MuJoCo, the scripted expert, the camera."""

import numpy as np
import pytest

from minivla_core.envs.fetch_env import FetchConfig, FetchEnv, FetchPushExpert


@pytest.fixture(scope="module")
def env():
    with FetchEnv(FetchConfig(image_size=64, seed=1000)) as env:
        yield env


def test_an_action_of_one_moves_the_gripper_about_a_hand_step(env):
    """The gripper follows its target with a lag: after a few full-speed steps it moves most of a hand step a step."""
    env.reset(3)
    xs = [env.step(np.array([1.0, 0.0, 0.0, -1.0])).state[0] for _ in range(6)]
    assert 0.5 * env.hand_step < xs[-1] - xs[-2] <= env.hand_step == pytest.approx(0.0125)


def test_the_expert_pushes_the_block_to_the_goal_on_unseen_layouts(env):
    expert, successes = FetchPushExpert(), 0
    for episode in range(5):
        obs = env.reset(episode)
        while not env.done and not obs.success:
            obs = env.step(expert.get_action(obs.privileged))
        successes += obs.success
    assert successes >= 4


def test_the_policy_state_is_what_the_arm_knows_and_the_camera_shows_block_and_goal(env):
    obs = env.reset(0)
    assert obs.state.shape == (4,) and 0.0 <= obs.state[3] <= 1.0  # gripper x, y, z and opening
    np.testing.assert_allclose(obs.state[:3], obs.privileged[:3])
    assert obs.images.shape == (1, 64, 64, 3) and obs.arm_joints.shape == (7,)
    red = (obs.image[..., 0] > 150) & (obs.image[..., 1] < 60) & (obs.image[..., 2] < 60)
    assert red.sum() >= 2  # the goal marker is drawn where the goal is
    again = env.reset(0)
    np.testing.assert_array_equal(again.privileged, obs.privileged)  # a layout is (seed, episode)
    assert not np.array_equal(env.reset(1).privileged[3:6], obs.privileged[3:6])
