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
from minivla_core.errors import ConfigError
from minivla_core.evaluate import ImageAblation, env_config_for
from minivla_core.model.policy import PolicyRunner


def test_image_ablations_replace_what_the_policy_sees():
    config = EnvConfig(image_size=32, seed=1000)
    with MetaWorldEnv(config) as env:
        first = env.reset(0)
        later = env.step(np.array([0.5, 0.5, 0.0, 0.0]))
        for mode in ("none", "black", "frozen", "shuffled"):
            ablation = ImageAblation(mode, config)
            ablation.reset(0, first.image)
            shown = [ablation(first.image), ablation(later.image), ablation(later.image)]
            ablation.close()
            if mode == "none":
                assert shown[1] is later.image
            elif mode == "black":
                assert not shown[1].any()
            elif mode == "frozen":
                assert all(np.array_equal(image, first.image) for image in shown)
            else:  # another layout, moving under the expert: neither this episode's image nor a still one
                assert not np.array_equal(shown[0], first.image)
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
                real = sample(obs.image, obs.state, 0)
                noise_shift += np.abs(real - sample(obs.image, obs.state, 1)).mean()
                black_shift += np.abs(real - sample(np.zeros_like(obs.image), obs.state, 0)).mean()
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
