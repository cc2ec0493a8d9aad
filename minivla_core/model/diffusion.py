"""The diffusion action head: noise schedule, training loss, DDIM sampler, denoising network.

Vocabulary (as in the DDPM and DDIM papers):
- x0 is a clean action chunk, normalised to [-1, 1], shape (B, horizon, action_dim).
- alpha_bar[t] is how much of x0 survives at noise level t:
      x_t = sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * eps,   eps ~ N(0, I)
- The cosine schedule makes alpha_bar fall from ~1 at t = 0 to ~0 at t = T - 1, so the last
  training level is pure noise, which is exactly where sampling starts.
- The network predicts eps ("epsilon"), x0 ("sample") or v = sqrt(ab) * eps - sqrt(1 - ab) * x0
  ("v"). All three give the same DDIM update; "v" stays well-behaved at the pure-noise end,
  which matters when sampling with only a handful of steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from minivla_core.config import PREDICTION_TYPES


def cosine_alpha_bar(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """alpha_bar[0..steps-1] of the cosine schedule (Nichol & Dhariwal 2021)."""
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0).float()


def ddim_timesteps(train_steps: int, inference_steps: int) -> list[int]:
    """Evenly spaced noise levels for sampling, always starting at the pure-noise level T - 1."""
    if not 1 <= inference_steps <= train_steps:
        raise ValueError(f"inference_steps must be in 1..{train_steps}, got {inference_steps}")
    stride = train_steps / inference_steps
    return [int(round(train_steps - 1 - i * stride)) for i in range(inference_steps)]


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FiLMBlock(nn.Module):
    """Residual MLP block whose features are scaled and shifted by the conditioning vector."""

    def __init__(self, hidden: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(cond_dim, 2 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.Mish(), nn.Linear(hidden, hidden))

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class Denoiser(nn.Module):
    """(noisy chunk x_t, level t, conditioning) -> prediction, same shape as the chunk."""

    def __init__(self, horizon: int, action_dim: int, cond_dim: int, hidden: int, blocks: int):
        super().__init__()
        flat = horizon * action_dim
        self.time_embedding = nn.Sequential(SinusoidalEmbedding(64), nn.Linear(64, cond_dim), nn.Mish())
        self.inp = nn.Linear(flat, hidden)
        self.blocks = nn.ModuleList([FiLMBlock(hidden, 2 * cond_dim) for _ in range(blocks)])
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, flat))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = torch.cat([cond, self.time_embedding(t)], dim=-1)
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, c)
        return self.out(h).view_as(x)


class DiffusionHead(nn.Module):
    def __init__(self, horizon: int, action_dim: int, cond_dim: int, hidden: int, blocks: int,
                 train_steps: int, prediction_type: str):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.horizon, self.action_dim = horizon, action_dim
        self.train_steps, self.prediction_type = train_steps, prediction_type
        self.denoiser = Denoiser(horizon, action_dim, cond_dim, hidden, blocks)
        self.register_buffer("alpha_bar", cosine_alpha_bar(train_steps), persistent=False)

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The DDPM objective: a uniformly random noise level per sample, MSE on the prediction."""
        t = torch.randint(0, self.train_steps, (x0.shape[0],), device=x0.device, generator=generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        ab = self.alpha_bar[t].view(-1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        target = {"epsilon": eps, "sample": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[self.prediction_type]
        return F.mse_loss(self.denoiser(x_t, t, cond), target)

    def _split(self, prediction, x_t, ab):
        """(x0, eps) implied by the network's prediction at level alpha_bar = ab."""
        if self.prediction_type == "epsilon":
            eps = prediction
            x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        elif self.prediction_type == "sample":
            x0 = prediction
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        else:
            x0 = ab.sqrt() * x_t - (1 - ab).sqrt() * prediction
            eps = ab.sqrt() * prediction + (1 - ab).sqrt() * x_t
        return x0, eps

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, inference_steps: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from pure noise; returns normalised chunks clipped to [-1, 1]."""
        x = torch.randn((cond.shape[0], self.horizon, self.action_dim), device=cond.device, generator=generator)
        levels = ddim_timesteps(self.train_steps, inference_steps)
        for i, t in enumerate(levels):
            ab = self.alpha_bar[t]
            ab_next = self.alpha_bar[levels[i + 1]] if i + 1 < len(levels) else torch.ones_like(ab)
            t_batch = torch.full((cond.shape[0],), t, device=cond.device, dtype=torch.long)
            x0, _ = self._split(self.denoiser(x, t_batch, cond), x, ab)
            x0 = x0.clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # consistent with the clipped x0
            x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
        return x.clamp(-1, 1)
