"""Shared fixtures: a tiny model config and a small real dataset collected once per session."""

from pathlib import Path

import pytest

from minivla_test_utils import tiny_model_config
from minivla_core.config import CollectConfig, Config, EnvConfig


@pytest.fixture(scope="session")
def two_episode_dataset(tmp_path_factory) -> Path:
    """Two real push-v3 expert episodes streamed to disk by the collector."""
    from minivla_core.data.collect import collect

    out = tmp_path_factory.mktemp("data") / "push-v3"
    result = collect(EnvConfig(image_size=32), CollectConfig(out=str(out), episodes=2), progress=False)
    assert result.kept == 2
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(two_episode_dataset, tmp_path_factory) -> Path:
    """A checkpoint trained for a few steps on the two-episode dataset."""
    from minivla_core.train import train

    run = tmp_path_factory.mktemp("run")
    config = Config(env=EnvConfig(image_size=32), model=tiny_model_config())
    config.train.dataset, config.train.out_dir = str(two_episode_dataset), str(run)
    config.train.epochs, config.train.batch_size, config.train.warmup_steps = 2, 16, 2
    config.train.val_fraction = 0.5
    train(config, progress=False)
    return run / "last.pt"
