"""Per-dimension normalisation whose statistics live in the model's state_dict (so they travel
with the checkpoint).

- Actions: min/max mapped to [-1, 1], the range the diffusion sampler clips to.
- States: zero mean, unit variance.
A dimension that never varies in the data (e.g. the padding of a second, absent object) is
passed through with only its offset removed instead of being divided by zero.
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
            scale = torch.where(span > eps, 2.0 / span.clamp(min=eps), torch.ones_like(span))
            offset = torch.where(span > eps, -1.0 - scale * low, -low)
        else:
            mean, std = data.mean(0), data.std(0)
            scale = torch.where(std > eps, 1.0 / std.clamp(min=eps), torch.ones_like(std))
            offset = -mean * scale
        self.scale.copy_(scale)
        self.offset.copy_(offset)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.offset) / self.scale
