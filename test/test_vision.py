"""A policy that sees: the image ablations of `minivla eval`, and the bundled checkpoints looking.

The first bundled checkpoints acted on Meta-World's privileged state and ignored their camera: a
black image changed nothing. Under the proprio protocol the scene reaches the policy only through
the image, so blanking it must move the actions far more than new sampling noise does.
"""

import dataclasses
import json

import numpy as np
import pytest

from minivla_test_utils import ROOT
from minivla_core.checkpoint import load_policy
from minivla_core.config import EnvConfig
from minivla_core.envs.metaworld_env import MetaWorldEnv, instruction_for
from minivla_core.errors import ConfigError, DatasetError
from minivla_core.evaluate import ImageAblation, env_config_for
from minivla_core.model.policy import PolicyRunner


def test_image_ablations_replace_what_the_policy_sees():
    config = EnvConfig(image_size=32, seed=1000)
    with MetaWorldEnv(config) as env:
        first = env.reset(0)
        later = env.step(np.array([0.5, 0.5, 0.0, 0.0]))
        for mode in ("none", "black", "frozen", "shuffled"):
            ablation = ImageAblation(mode, config)
            ablation.reset(0, first.images)
            shown = [ablation(first.images), ablation(later.images), ablation(later.images)]
            ablation.close()
            if mode == "none":
                assert shown[1] is later.images
            elif mode == "black":
                assert not shown[1].any()
            elif mode == "frozen":
                assert all(np.array_equal(image, first.images) for image in shown)
            else:  # another layout, moving under the expert: neither this episode's image nor a still one
                assert not np.array_equal(shown[0], first.images)
                assert not np.array_equal(shown[0], shown[2])
    with pytest.raises(ConfigError, match="image_ablation must be one of"):
        ImageAblation("grey", config)


@pytest.mark.parametrize("checkpoint", ["checkpoints/push_v3.pt", "checkpoints/multitask.pt"])
def test_a_black_image_moves_the_bundled_policies_far_more_than_new_noise(checkpoint):
    policy, payload = load_policy(ROOT / checkpoint)
    assert payload["env"]["observation"] == "proprio" and payload["state_dim"] == 4
    base = env_config_for(payload["env"], EnvConfig(seed=1000))
    for task in payload["env"]["tasks"]:
        runner = PolicyRunner(policy, instruction_for(task))

        def sample(image, state, seed):
            runner.generator.manual_seed(seed)
            return runner.sample_chunk(image, state)

        noise_shift = black_shift = 0.0
        with MetaWorldEnv(dataclasses.replace(base, task=task)) as env:
            for episode in range(3):
                obs = env.reset(episode)
                real = sample(obs.images, obs.state, 0)
                noise_shift += np.abs(real - sample(obs.images, obs.state, 1)).mean()
                black_shift += np.abs(real - sample(np.zeros_like(obs.images), obs.state, 0)).mean()
        assert black_shift > 3 * noise_shift, (task, black_shift, noise_shift)


def test_eval_reports_the_ablation_and_the_protocol(tmp_path, tiny_checkpoint):
    from test_checkpoint_and_cli import minivla

    out = tmp_path / "eval.json"
    result = minivla("eval", "--checkpoint", tiny_checkpoint, "--episodes", "1", "--max-episode-steps", "5",
                     "--image-ablation", "shuffled", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "images shuffled" in result.stdout and "observation proprio" in result.stdout
    data = json.loads(out.read_text())
    assert data["image_ablation"] == "shuffled" and data["observation"] == "proprio"


def test_a_camera_in_the_gripper_travels_from_env_to_dataset_to_checkpoint_to_eval(tmp_path):
    """env.extra_cameras: one more image per step, through collection, training, the checkpoint and eval."""
    from minivla_test_utils import tiny_model_config
    from minivla_core.config import CollectConfig, Config
    from minivla_core.data.collect import collect
    from minivla_core.data.dataset import load_episodes
    from minivla_core.train import train
    from test_checkpoint_and_cli import minivla

    env = EnvConfig(task="reach-v3", image_size=32, extra_cameras=["gripperPOV"])
    assert collect(env, CollectConfig(out=str(tmp_path / "data"), episodes=2), progress=False).kept == 2
    meta, episodes = load_episodes(tmp_path / "data")
    assert meta["extra_cameras"] == ["gripperPOV"]
    images = episodes[0].images
    assert images.shape[1:] == (2, 32, 32, 3)
    assert not np.array_equal(images[0, 0], images[0, 1])  # two different views
    # the gripper's view changes as the hand moves more than the corner's does (the arm is a small part of it)
    change = np.abs(images[-1].astype(int) - images[0].astype(int)).mean(axis=(1, 2, 3))
    assert change[1] > change[0], change

    config = Config(env=env, model=tiny_model_config())
    config.train.dataset, config.train.out_dir = str(tmp_path / "data"), str(tmp_path / "run")
    config.train.epochs, config.train.batch_size, config.train.warmup_steps = 1, 16, 1
    train(config, progress=False)
    policy, payload = load_policy(tmp_path / "run" / "last.pt")
    assert payload["env"]["extra_cameras"] == ["gripperPOV"] and policy.cameras == 2
    runner = PolicyRunner(policy, "reach the goal position")
    with pytest.raises(ValueError, match="from each of 2 camera"):
        runner.act(images[0, :1], episodes[0].states[0])  # the corner's image alone is not enough
    assert runner.act(images[0], episodes[0].states[0]).shape == (4,)

    info = minivla("info", "--checkpoint", tmp_path / "run" / "last.pt")
    assert "and gripperPOV" in info.stdout
    result = minivla("eval", "--checkpoint", tmp_path / "run" / "last.pt", "--episodes", "1",
                     "--max-episode-steps", "3", "--image-ablation", "black")
    assert result.returncode == 0 and "reach-v3: 0/1" in result.stdout, result.stderr
    # the config and the dataset must agree on the cameras
    config.env.extra_cameras = []
    with pytest.raises(DatasetError, match="has the extra cameras \\['gripperPOV'\\] but env.extra_cameras is \\[\\]"):
        train(config, progress=False)
