"""Per-dimension normalisation whose statistics live in the model's state_dict (so they travel
with the checkpoint).

- Actions: min/max mapped to [-1, 1], the range the diffusion sampler clips to.
- States: zero mean, unit variance.
A state dimension that never varies in the data (e.g. the padding of a second, absent object) is
passed through with only its offset removed instead of being divided by zero. An action dimension
that never varies (a gripper that stays closed through every demonstration) is pinned: scale 0,
its constant kept as the offset; it normalises to 0 and unnormalises to exactly the constant,
whatever the sampler returns. (Before this, it was
passed through like a state's, and a sample off by 0.05 left the action range.)
"""

from __future__ import annotations

import torch
from torch import nn


class RangeNormalizer(nn.Module):
    """x -> scale * x + offset, fitted either to [-1, 1] (mode "limits") or to mean 0 / std 1."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        if mode not in ("limits", "gaussian"):
            raise ValueError(f"unknown normaliser mode {mode!r}")
        self.mode = mode
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("offset", torch.zeros(dim))

    @torch.no_grad()
    def fit(self, data: torch.Tensor, eps: float = 1e-4) -> None:
        data = data.reshape(-1, data.shape[-1]).float()
        if self.mode == "limits":
            low, high = data.min(0).values, data.max(0).values
            span = high - low
            scale = torch.where(span > eps, 2.0 / span.clamp(min=eps), torch.zeros_like(span))
            offset = torch.where(span > eps, -1.0 - scale * low, low)
        else:
            mean, std = data.mean(0), data.std(0)
            scale = torch.where(std > eps, 1.0 / std.clamp(min=eps), torch.ones_like(std))
            offset = -mean * scale
        self.scale.copy_(scale)
        self.offset.copy_(offset)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.scale == 0, 0.0, x * self.scale + self.offset)

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        pinned = self.scale == 0  # a constant action dimension: its value, whatever y says
        return torch.where(pinned, self.offset, (y - self.offset) / torch.where(pinned, 1.0, self.scale))
