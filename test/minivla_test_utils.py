"""Helpers shared by the test modules (a plain module: `conftest` names clash across folders)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minivla_core.config import ModelConfig  # noqa: E402


def tiny_model_config() -> ModelConfig:
    return ModelConfig(d_model=32, d_word=16, horizon=4, n_action_steps=2, denoiser_hidden=64,
                       denoiser_blocks=1, diffusion_steps=20, inference_steps=4, keypoints=8, image_channels=8)
