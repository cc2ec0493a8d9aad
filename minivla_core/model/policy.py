"""The VLA policy: encoders + fusion + diffusion head + normalisers + tokenizer, and the
chunk-executing runner used by evaluation and by the ROS policy node.

    scene camera image ─── TinyCNN ──┐   (or KeypointCNN: model.image_encoder)
    [each extra camera ─── TinyCNN ──┤]  (env.extra_cameras, e.g. the gripper's view)
    instruction words ─── TextGRU ───┼─ FusionMLP ─ cond ─ DiffusionHead ─ (B, horizon, A) actions
    state (B,S) ── normalise ─ MLP ──┘

The state is what env.observation says: 4 numbers (hand position, gripper) by default, so
everything about the scene has to come through the images. Each camera has an encoder of its own
(a view from the gripper and one from the corner show different things) and its own token. An
action is A = action_dim numbers: 4 for the simulated arms (hand velocity, gripper), a robot's own
command size otherwise (3 for a twist and no gripper); the checkpoint records it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from minivla_core.config import ModelConfig
from minivla_core.errors import NonFiniteActions
from minivla_core.model import engines
from minivla_core.model.diffusion import DiffusionHead
from minivla_core.model.encoders import FusionMLP, StateMLP, TextGRU, make_image_encoder
from minivla_core.model.normalizer import RangeNormalizer
from minivla_core.model.tokenizer import WordTokenizer


class VLAPolicy(nn.Module):
    def __init__(self, config: ModelConfig, vocab: list[str], state_dim: int, action_dim: int, image_size: int,
                 cameras: int = 1):
        super().__init__()
        self.config = config
        self.state_dim, self.action_dim, self.image_size, self.cameras = state_dim, action_dim, image_size, cameras

        def image_encoder():
            return make_image_encoder(config.image_encoder, config.d_model, image_size, config.keypoints,
                                      config.image_channels)

        self.tokenizer = WordTokenizer(vocab, config.stem_words)
        self.image_encoder = image_encoder()  # the scene camera
        self.extra_image_encoders = nn.ModuleList([image_encoder() for _ in range(cameras - 1)])
        self.text_encoder = TextGRU(len(vocab), config.d_word, config.d_model)
        self.state_encoder = StateMLP(state_dim, config.d_model)
        self.fusion = FusionMLP(config.d_model, config.text_film, image_tokens=cameras)
        self.head = DiffusionHead(config.horizon, action_dim, config.d_model, config.denoiser_hidden,
                                  config.denoiser_blocks, config.diffusion_steps, config.prediction_type)
        self.state_normalizer = RangeNormalizer(state_dim, "gaussian")
        self.action_normalizer = RangeNormalizer(action_dim, "limits")
        # Samplers built for closed-loop use (sampler_for, below), kept so that every runner of this policy (one per
        # task in an evaluation, one per instruction in the policy node) reuses them: building one takes a second.
        self.built_samplers: dict[tuple[int, str, bool], object] = {}

    def tokenize(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Padded token ids (B, L), lengths (B,), and every word that was not in the vocabulary."""
        encoded = [self.tokenizer.encode(text, self.config.max_tokens) for text in instructions]
        lengths = torch.tensor([len(ids) for ids, _ in encoded])
        tokens = torch.zeros(len(encoded), int(lengths.max()), dtype=torch.long)
        for row, (ids, _) in enumerate(encoded):
            tokens[row, : len(ids)] = torch.tensor(ids)
        unknown = [word for _, words in encoded for word in words]
        return tokens, lengths, unknown

    def encode(self, images: torch.Tensor, states: torch.Tensor, tokens: torch.Tensor,
               lengths: torch.Tensor, text_token: torch.Tensor | None = None) -> torch.Tensor:
        """images (B,cameras,3,H,W) floats in [0,1], raw states (B,S) -> conditioning (B, d_model). `text_token`:
        the text encoder's output for these tokens, if already known (a runner keeps its instruction's)."""
        encoders = [self.image_encoder, *self.extra_image_encoders]
        image_tokens = [encoder(images[:, camera]) for camera, encoder in enumerate(encoders)]
        if text_token is None:
            text_token = self.text_encoder(tokens.to(images.device), lengths)
        state_token = self.state_encoder(self.state_normalizer.normalize(states))
        return self.fusion(image_tokens, text_token, state_token)

    def compute_loss(self, images, states, tokens, lengths, action_chunks, noise_samples: int = 1,
                     noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Diffusion loss for raw action chunks (B, horizon, A); each observation is encoded once
        and scored against `noise_samples` independent noise draws (`noise`: the levels (noise_samples * B,) and
        noise (noise_samples * B, horizon, A) to use, draw k of observation b at row k * B + b; else drawn here)."""
        cond = self.encode(images, states, tokens, lengths)
        x0 = self.action_normalizer.normalize(action_chunks)
        return self.head.loss(x0.repeat(noise_samples, 1, 1), cond.repeat(noise_samples, 1), noise=noise)

    @torch.no_grad()
    def predict_action_chunk(self, images, states, tokens, lengths, inference_steps: int | None = None,
                             generator: torch.Generator | None = None,
                             text_token: torch.Tensor | None = None) -> torch.Tensor:
        """Raw action chunks (B, horizon, A) for images (B,cameras,3,H,W) in [0,1] and raw states (B,S)."""
        cond = self.encode(images, states, tokens, lengths, text_token)
        x0 = self.head.sample(cond, inference_steps or self.config.inference_steps, generator)
        return self.action_normalizer.unnormalize(x0)


def image_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(cameras, H, W, 3) or (B, cameras, H, W, 3) uint8 -> (B, cameras, 3, H, W) float in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.ndim == 4:
        tensor = tensor[None]
    return tensor.permute(0, 1, 4, 2, 3).float() / 255.0


class ChunkSampler(nn.Module):
    """predict_action_chunk for one observation and a fixed number of DDIM steps, as one module with tensors in and
    out, so that an engine (engines.py: ONNX Runtime or TorchScript) can run it as a single graph: Python then runs
    once per chunk instead of once for each of the ~300 small operations of 10 denoising steps
    (bench/bench_sampling.py measures the difference; the numbers are the same)."""

    def __init__(self, policy: VLAPolicy, inference_steps: int):
        super().__init__()
        self.policy, self.inference_steps = policy, inference_steps

    def forward(self, images: torch.Tensor, states: torch.Tensor, text_token: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        cond = self.policy.encode(images, states, None, None, text_token)
        return self.policy.action_normalizer.unnormalize(self.policy.head.sample(cond, self.inference_steps,
                                                                                 noise=noise))


class InpaintingSampler(ChunkSampler):
    """ChunkSampler whose chunk keeps the actions `known` (raw, (B, horizon, A)) where `mask` (B, horizon, 1) is 1
    (the frozen actions of real-time chunking: minivla_core/timed.py)."""

    def forward(self, images: torch.Tensor, states: torch.Tensor, text_token: torch.Tensor, noise: torch.Tensor,
                known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cond = self.policy.encode(images, states, None, None, text_token)
        normalizer = self.policy.action_normalizer
        chunk = self.policy.head.sample(cond, self.inference_steps, noise=noise, known=normalizer.normalize(known),
                                        mask=mask)
        return normalizer.unnormalize(chunk)


def sampler_for(policy: VLAPolicy, inference_steps: int, engine: str, inpainting: bool = False):
    """The policy's ChunkSampler (InpaintingSampler with `inpainting`) for this many DDIM steps, as `engine` runs it
    (minivla_core/model/engines.py); built at the first call, then kept with the policy. The weights must not change
    after that: this is for a policy in use, not in training."""
    key = (inference_steps, engine, inpainting)
    if key not in policy.built_samplers:
        module = (InpaintingSampler if inpainting else ChunkSampler)(policy, inference_steps)
        policy.built_samplers[key] = engines.build(module, example_inputs(policy, inpainting), engine)
    return policy.built_samplers[key]


def example_inputs(policy: VLAPolicy, inpainting: bool = False) -> tuple[torch.Tensor, ...]:
    """Inputs of the sampler's shapes (zeros) to build it with: images, state, text token, noise, and with
    `inpainting` the known actions and their mask."""
    size, horizon = policy.image_size, policy.config.horizon
    inputs = (torch.zeros(1, policy.cameras, 3, size, size), torch.zeros(1, policy.state_dim),
              torch.zeros(1, policy.config.d_model), torch.zeros(1, horizon, policy.action_dim))
    if inpainting:
        inputs += (torch.zeros(1, horizon, policy.action_dim), torch.zeros(1, horizon, 1))
    return inputs


MAX_STATE_SIGMAS = 50.0  # a hand 50 standard deviations (about 5 m) from every training state is not real


def finite_chunk(chunk: np.ndarray) -> np.ndarray:
    """`chunk` if every number of it is finite; else NonFiniteActions."""
    if not np.all(np.isfinite(chunk)):
        raise NonFiniteActions(f"the policy sampled NaN or infinite actions ({int(np.sum(~np.isfinite(chunk)))} of "
                               f"{chunk.size} numbers of a chunk) from an observation within its training range: its "
                               f"weights produce non-finite actions")
    return chunk


def episode_seed(seed: int, episode: int) -> int:
    """The sampler's noise seed for one episode: an episode's actions do not depend on the episodes before it, so
    `minivla eval` and the ROS graph in lockstep (both reset the runner with the episode's number) draw the same
    noise on the same layout."""
    return seed * 1_000_003 + episode


class SamplingInputs(NamedTuple):
    """What a sampling call drew on besides the observation: enough to run it again step by step (denoising)."""
    noise: torch.Tensor  # (1, horizon, A), normalised
    text_token: torch.Tensor  # the instruction, encoded
    inference_steps: int
    known: torch.Tensor | None = None  # timed execution's frozen actions (raw, (1, horizon, A)) and their mask
    mask: torch.Tensor | None = None


class PolicyRunner:
    """Closed-loop use of a VLAPolicy: one action per call, sampling a new chunk only when the
    previous chunk's first `n_action_steps` actions have been used (LeRobot's select_action)."""

    def __init__(self, policy: VLAPolicy, instruction: str, n_action_steps: int | None = None,
                 inference_steps: int | None = None, seed: int = 0, engine: str = "onnxruntime"):
        self.policy = policy.eval()
        self.engine = engine  # what runs the sampler: minivla_core/model/engines.py
        self.n_action_steps = n_action_steps or policy.config.n_action_steps
        if not 1 <= self.n_action_steps <= policy.config.horizon:
            raise ValueError(f"n_action_steps must be in 1..{policy.config.horizon}, got {self.n_action_steps}")
        self.inference_steps = inference_steps or policy.config.inference_steps  # traces the sampler
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.queue: deque[np.ndarray] = deque()
        self.chunk_index = -1  # how many chunks have been sampled since reset, minus one
        self.step_in_chunk = -1  # position in its chunk of the action act() returned last
        self.last_sample_seconds = 0.0  # duration of the latest sampling call
        self.last_chunk = None  # the latest sampling call's (horizon, A) chunk,
        self.last_sampling: SamplingInputs | None = None  # and what it was sampled from besides the observation
        self.unknown_words: list[str] = []
        self.set_instruction(instruction)

    @property
    def inference_steps(self) -> int:
        return self.sampler_steps

    @inference_steps.setter
    def inference_steps(self, steps: int) -> None:
        """DDIM steps per chunk; the sampler for them is built now (about a second, once per policy), not at a chunk."""
        self.sampler, self.sampler_steps = sampler_for(self.policy, steps, self.engine), steps
        self.inpainting_sampler = None  # built when first needed (timed execution: sample_continuing)

    def set_instruction(self, instruction: str) -> list[str]:
        """Switch instruction (clears queued actions); returns the words the model does not know."""
        self.tokens, self.lengths, self.unknown_words = self.policy.tokenize([instruction])
        with torch.no_grad():  # the same words give the same token: encoded once, not at every chunk
            self.text_token = self.policy.text_encoder(self.tokens, self.lengths)
        self.instruction = instruction
        self.queue.clear()
        return self.unknown_words

    def reset(self, episode: int | None = None) -> None:
        """Forget the queued actions; at the start of an episode, also restart the noise at its seed."""
        self.queue.clear()
        self.chunk_index = -1
        if episode is not None:
            self.generator.manual_seed(episode_seed(self.seed, episode))

    def check_inputs(self, images: np.ndarray, state: np.ndarray) -> None:
        size, cameras, state_dim = self.policy.image_size, self.policy.cameras, self.policy.state_dim
        if images.dtype != np.uint8 or images.shape != (cameras, size, size, 3):
            raise ValueError(f"images are {images.shape} {images.dtype}, expected ({cameras}, {size}, {size}, 3) "
                             f"uint8 RGB: one {size}x{size} image from each of {cameras} camera(s)")
        if state.shape != (state_dim,):
            raise ValueError(f"state has shape {state.shape}, expected ({state_dim},)")
        if not np.all(np.isfinite(state)):
            raise ValueError("state contains NaN or infinite values")
        sigmas = np.abs(self.policy.state_normalizer.normalize(torch.from_numpy(state.astype(np.float32))).numpy())
        if np.any(sigmas > MAX_STATE_SIGMAS):  # wrong units, a sensor fault, or a bad publisher: not a robot state
            raise ValueError(f"state {state.tolist()} lies {sigmas.max():.3g} standard deviations from the training "
                             f"states (limit {MAX_STATE_SIGMAS})")

    def sample_chunk(self, images: np.ndarray, state: np.ndarray) -> np.ndarray:
        """A fresh (horizon, A) chunk for one observation: images (cameras, H, W, 3) and the state."""
        self.check_inputs(images, state)
        return self._sample(images, state)

    def _sample(self, images: np.ndarray, state: np.ndarray) -> np.ndarray:
        """What predict_action_chunk computes, through the runner's sampler (its engine); the noise comes from this
        runner's generator."""
        started = time.perf_counter()
        states = torch.from_numpy(np.asarray(state, dtype=np.float32))[None]
        noise = torch.randn((1, self.policy.config.horizon, self.policy.action_dim), generator=self.generator)
        with torch.no_grad():
            chunk = finite_chunk(self.sampler(image_to_tensor(images), states, self.text_token, noise)[0].numpy())
        self.last_sample_seconds = time.perf_counter() - started
        self.last_chunk, self.last_sampling = chunk, SamplingInputs(noise, self.text_token, self.inference_steps)
        return chunk

    def denoising(self, images: np.ndarray, state: np.ndarray,
                  sampling: SamplingInputs | None = None) -> list[np.ndarray]:
        """The chunk after each DDIM step of a sampling call (raw actions, (horizon, A) each, clipped to the action
        range as the last one is), for a viewer (view.py): the latest call's, or the one `sampling` (its
        last_sampling then) describes, with the observation it was sampled from. The engine runs the sampler as one
        graph, with no step in between to look at, so the plain torch sampler runs again with the same noise (and
        frozen actions): its last chunk is the one executed, to float rounding. Nothing the runner does depends on
        this call, and it reads nothing a later sampling call changes (so another thread may make it)."""
        sampling = sampling or self.last_sampling
        steps = []
        with torch.no_grad():
            states = torch.from_numpy(np.asarray(state, dtype=np.float32))[None]
            cond = self.policy.encode(image_to_tensor(images), states, None, None, sampling.text_token)
            known = None if sampling.known is None else self.policy.action_normalizer.normalize(sampling.known)

            def keep(step: int, x: torch.Tensor) -> None:  # each step's chunk, its frozen actions as they stay
                steps.append((x if known is None else torch.lerp(x, known, sampling.mask)).clamp(-1, 1))

            self.policy.head.sample(cond, sampling.inference_steps, noise=sampling.noise, known=known,
                                    mask=sampling.mask, on_step=keep)
        return [self.policy.action_normalizer.unnormalize(x)[0].numpy() for x in steps]

    def sample_continuing(self, images: np.ndarray, state: np.ndarray, frozen: np.ndarray) -> np.ndarray:
        """A fresh chunk whose first len(frozen) actions are `frozen` (the previous chunk's actions that the robot
        executes while this one is computed) and whose rest continues them (inpainting: real-time chunking,
        minivla_core/timed.py). With nothing frozen, the same chunk as sample_chunk."""
        self.check_inputs(images, state)
        if len(frozen) == 0:
            return self._sample(images, state)
        horizon, action_dim = self.policy.config.horizon, self.policy.action_dim
        known, mask = torch.zeros(1, horizon, action_dim), torch.zeros(1, horizon, 1)
        known[0, : len(frozen)], mask[0, : len(frozen)] = torch.from_numpy(np.asarray(frozen, np.float32)), 1.0
        noise = torch.randn((1, horizon, action_dim), generator=self.generator)
        states = torch.from_numpy(np.asarray(state, dtype=np.float32))[None]
        self.prepare_continuing()
        started = time.perf_counter()
        with torch.no_grad():
            chunk = self.inpainting_sampler(image_to_tensor(images), states, self.text_token, noise, known, mask)
        self.last_sample_seconds = time.perf_counter() - started
        self.last_chunk = finite_chunk(chunk[0].numpy())
        self.last_sampling = SamplingInputs(noise, self.text_token, self.inference_steps, known, mask)
        return self.last_chunk

    def prepare_continuing(self) -> None:
        """Build the inpainting sampler now (about a second, once per policy), not in the first chunk that needs it."""
        if self.inpainting_sampler is None:
            self.inpainting_sampler = sampler_for(self.policy, self.inference_steps, self.engine, inpainting=True)

    def act(self, images: np.ndarray, state: np.ndarray) -> np.ndarray:
        """The next action for images (cameras, H, W, 3) and the state; every observation is checked,
        also those that only pop the queue."""
        self.check_inputs(images, state)
        if not self.queue:
            chunk = self._sample(images, state)  # inputs checked above
            self.queue.extend(chunk[: self.n_action_steps])
            self.chunk_index += 1
        self.step_in_chunk = self.n_action_steps - len(self.queue)
        return self.queue.popleft()
