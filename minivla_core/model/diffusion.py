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
from typing import Callable

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

    # --- sampling, fast: the same function, with what does not change between steps computed once ---------
    @torch.no_grad()
    def modulations(self, levels: list[int], cond: torch.Tensor) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """For each noise level, for each block: FiLM's (1 + scale, shift). They depend on the conditioning and the
        level only, so a chunk computes them once instead of once per denoising step: FiLM's linear map is split
        into its conditioning columns (applied to cond once) and its time columns (applied to each level)."""
        time_features = self.time_embedding(torch.tensor(levels, device=cond.device))  # (levels, cond_dim)
        split = cond.shape[-1]
        per_block = []
        for block in self.blocks:
            weight, bias = block.film.weight, block.film.bias
            from_cond = F.linear(cond, weight[:, :split])  # (B, 2 * hidden)
            from_time = F.linear(time_features, weight[:, split:], bias)  # (levels, 2 * hidden)
            scale, shift = (from_cond[None] + from_time[:, None]).chunk(2, dim=-1)  # (levels, B, hidden) each
            per_block.append((1 + scale, shift))
        return [[(scale[i], shift[i]) for scale, shift in per_block] for i in range(len(levels))]

    def denoise(self, x: torch.Tensor, modulation: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """forward() at one level, given that level's modulations (functional calls: no per-module overhead)."""
        h = F.linear(x.flatten(1), self.inp.weight, self.inp.bias)
        for block, (scale, shift) in zip(self.blocks, modulation):
            first, _, second = block.mlp
            z = torch.addcmul(shift, F.layer_norm(h, h.shape[-1:], eps=block.norm.eps), scale)
            h = h + F.linear(F.mish(F.linear(z, first.weight, first.bias)), second.weight, second.bias)
        norm, linear = self.out
        h = F.layer_norm(h, h.shape[-1:], norm.weight, norm.bias, norm.eps)
        return F.linear(h, linear.weight, linear.bias).view_as(x)


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

    def loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None,
             noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The DDPM objective: a uniformly random noise level per sample, MSE on the prediction. `noise`: the levels
        (B,) and the noise (like x0), if drawn already (training draws them for a whole global batch)."""
        if noise is None:
            t = torch.randint(0, self.train_steps, (x0.shape[0],), device=x0.device, generator=generator)
            eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        else:
            t, eps = noise
        ab = self.alpha_bar[t].view(-1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        target = {"epsilon": eps, "sample": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[self.prediction_type]
        return F.mse_loss(self.denoiser(x_t, t, cond), target)

    def x0_coefficients(self, ab: float) -> tuple[float, float]:
        """(p, q) with x0 = p * x_t + q * prediction at level alpha_bar = ab, for the network's prediction type:
        epsilon: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps; sample: x0 itself; v = sqrt(ab) eps - sqrt(1 - ab) x0."""
        a, b = math.sqrt(ab), math.sqrt(1 - ab)
        return {"epsilon": (1 / a, -b / a), "sample": (0.0, 1.0), "v": (a, -b)}[self.prediction_type]

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, inference_steps: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, known: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, on_step: Callable[[int, torch.Tensor], None] | None = None
               ) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from pure noise (`noise`, else drawn from `generator`); returns normalised
        chunks clipped to [-1, 1].

        Each step: the network's prediction gives x0 (clipped to [-1, 1]) and the noise eps consistent with the
        clipped x0, eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab); the next, less noisy level takes
        x = sqrt(ab') x0 + sqrt(1 - ab') eps = k0 x0 + kx x_t (plain numbers, computed once per level).

        Inpainting (real-time chunking's frozen actions): where `mask` (B, horizon, 1) is 1, the chunk is `known`
        (B, horizon, A, normalised): before each step those actions are set to `known` noised to the step's level
        with the chunk's own noise, so the network fills in the rest to continue them; the result holds them
        exactly. A mask of zeros changes nothing.

        `on_step(i, x)`, if given, sees the chunk x after each step i (for a viewer of the denoising: view.py); it
        changes nothing, and the samplers an engine runs (policy.py ChunkSampler) never pass it."""
        x = noise if noise is not None else torch.randn((cond.shape[0], self.horizon, self.action_dim),
                                                        device=cond.device, generator=generator)
        start_noise = x
        levels = ddim_timesteps(self.train_steps, inference_steps)
        alpha_bars = [float(self.alpha_bar[t]) for t in levels] + [1.0]
        steps = zip(self.denoiser.modulations(levels, cond), alpha_bars, alpha_bars[1:])
        for step, (modulation, ab, ab_next) in enumerate(steps):
            if known is not None:
                x = torch.lerp(x, known * math.sqrt(ab) + start_noise * math.sqrt(1 - ab), mask)
            p, q = self.x0_coefficients(ab)
            x0 = torch.add(x * p, self.denoiser.denoise(x, modulation), alpha=q).clamp_(-1, 1)
            kx = math.sqrt(1 - ab_next) / math.sqrt(1 - ab)
            x = torch.add(x0 * (math.sqrt(ab_next) - kx * math.sqrt(ab)), x, alpha=kx)
            if on_step is not None:
                on_step(step, x)
        if known is not None:
            x = torch.lerp(x, known, mask)
        return x.clamp(-1, 1)
