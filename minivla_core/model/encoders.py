"""The three encoders and the fusion MLP. Each maps its input to one d_model-sized token.

Two image encoders (model.image_encoder), compared in bench/results/ablation.md:
- TinyCNN ("flatten", the default) shrinks the image 16-fold (128 px -> an 8x8 map) and flattens
  it rather than averaging it, so the token keeps where things are: with a fixed camera, where the
  puck is in the image is where it is on the table. Cheap: a training step costs a third of KeypointCNN's.
- KeypointCNN ("keypoints") answers "where is each thing" explicitly: its feature maps stay at
  half the image's resolution and a spatial softmax turns each map into one (x, y) point.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from minivla_core.config import IMAGE_ENCODERS
from minivla_core.errors import ConfigError


class TinyCNN(nn.Module):
    """(B, 3, H, W) floats in [0, 1] -> (B, d_model).

    Four stride-2 convolutions shrink the image 16-fold (128x128 -> 8x8); the map is flattened (not
    averaged) so the token still says *where* things are in the picture.
    """

    def __init__(self, d_model: int, image_size: int):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 16, kernel_size=5, stride=2, padding=2),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1),
        ])
        side = image_size
        for _ in self.convs:
            side = (side + 1) // 2
        self.proj = nn.Linear(64 * side * side, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2.0 - 1.0
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.norm(self.proj(x.flatten(1)))


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) feature maps -> (B, 2K): for each of K keypoint maps, the expected (x, y)
    position under a softmax over its pixels, in [-1, 1] image coordinates.

    Each keypoint map is a learned 1x1 mix of the C features; the softmax puts nearly all its
    weight where that mix is largest, so the output is "where does feature k fire".
    """

    def __init__(self, channels: int, keypoints: int, height: int, width: int):
        super().__init__()
        self.to_keypoints = nn.Conv2d(channels, keypoints, kernel_size=1)
        # Learned sharpness of the softmax, starting sharp (0.1): at 1.0 the softmax over ~1000 pixels is so
        # flat that every keypoint sits at the centre and hardly any gradient reaches the convolutions.
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(0.1)))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid_x", xs.reshape(-1), persistent=False)
        self.register_buffer("grid_y", ys.reshape(-1), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.to_keypoints(features).flatten(2)  # (B, K, H*W)
        attention = torch.softmax(logits / self.log_temperature.exp(), dim=-1)
        x = (attention * self.grid_x).sum(-1)
        y = (attention * self.grid_y).sum(-1)
        return torch.cat([x, y], dim=-1)


class KeypointCNN(nn.Module):
    """(B, 3, H, W) floats in [0, 1] -> (B, d_model): keypoint positions plus pooled features.

    One stride-2 convolution halves the image (64x64 -> 32x32), two more look at 3x3
    neighbourhoods at that resolution, then SpatialSoftmax gives `keypoints` (x, y) points. The
    features averaged over the image ("what is there": a drawer, a door) join the points.
    """

    def __init__(self, d_model: int, image_size: int, keypoints: int = 32, channels: int = 32):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, channels, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        ])
        # GroupNorm keeps every layer's features at unit scale (as in diffusion_policy): without it they
        # shrink layer by layer, the softmax below sees near-equal logits everywhere, every keypoint sits at
        # the image centre whatever the image shows, and the policy learns to ignore its camera.
        self.norms = nn.ModuleList([nn.GroupNorm(min(8, channels), channels) for _ in self.convs])
        side = (image_size + 1) // 2
        self.keypoints = SpatialSoftmax(channels, keypoints, side, side)
        self.proj = nn.Linear(2 * keypoints + channels, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2.0 - 1.0
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        features = torch.cat([self.keypoints(x), x.mean(dim=(2, 3))], dim=-1)
        return self.norm(self.proj(features))


def make_image_encoder(name: str, d_model: int, image_size: int, keypoints: int, channels: int) -> nn.Module:
    if name == "keypoints":
        return KeypointCNN(d_model, image_size, keypoints, channels)
    if name == "flatten":
        return TinyCNN(d_model, image_size)
    raise ConfigError(f"model.image_encoder must be one of {IMAGE_ENCODERS}, got {name!r}")


class TextGRU(nn.Module):
    """(B, L) token ids, 0 = padding, and (B,) lengths -> (B, d_model): the GRU's last hidden state."""

    def __init__(self, vocab_size: int, d_word: int, d_model: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_word, padding_idx=0)
        self.gru = nn.GRU(d_word, d_model, batch_first=True)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)
        return self.norm(hidden[-1])


class StateMLP(nn.Module):
    """(B, state_dim) normalised state -> (B, d_model)."""

    def __init__(self, state_dim: int, d_model: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, 128), nn.ReLU(), nn.Linear(128, d_model))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(state))


class FusionMLP(nn.Module):
    """Image (one per camera), text and state tokens -> one conditioning vector for the action head.

    With text_film, the instruction also scales and shifts every feature of the image and state
    tokens (FiLM) before they are concatenated: what the policy looks at depends on what it was
    asked, instead of the text being one more input the MLP may learn to ignore.
    """

    def __init__(self, d_model: int, text_film: bool = False, image_tokens: int = 1):
        super().__init__()
        self.film = nn.Linear(d_model, 4 * d_model) if text_film else None
        self.net = nn.Sequential(nn.Linear((2 + image_tokens) * d_model, 2 * d_model), nn.ReLU(),
                                 nn.Linear(2 * d_model, d_model))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, image_tokens: list, text_token, state_token) -> torch.Tensor:
        if self.film is not None:
            image_scale, image_shift, state_scale, state_shift = self.film(text_token).chunk(4, dim=-1)
            image_tokens = [token * (1 + image_scale) + image_shift for token in image_tokens]
            state_token = state_token * (1 + state_scale) + state_shift
        return self.norm(self.net(torch.cat([*image_tokens, text_token, state_token], dim=-1)))
