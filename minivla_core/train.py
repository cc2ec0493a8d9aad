"""Behaviour cloning of the diffusion policy on a dataset folder.

Each training sample is one time step t of one episode: the images (one per camera) and state at t, the episode's
instruction, and the chunk of `horizon` actions starting at t (the last action repeated past the
end of the episode). Episodes, not steps, are split between training and validation.

With train.foreign_instructions > 0 (multi-task data), that share of training samples gets the
instruction of a task from another scene instead (e.g. "open the door" over a drawer image) and a
hold-still chunk (no motion, the gripper as the demo held it). Without it a policy can read the
task off the scene and ignore the words wherever the scene allows one task only.

Writes to train.out_dir:
    best.pt     EMA weights with the lowest validation loss (training loss, without validation episodes)
    last.pt     EMA weights after the last epoch, plus everything --resume needs
    loss.png    training and validation loss per epoch
    history.json

With too few episodes for a validation split (3 demonstrations at train.val_fraction 0.1 leave none), training goes
on, and best.pt is the epoch with the lowest training loss: said at the start, in the last line of `minivla train`,
in history.json (`best_chosen_on`, `note`; `val_loss` null) and in each checkpoint's info (`best_chosen_on`). A few
demonstrations are what a new robot often starts with; refusing would only send the user to set train.val_fraction
to 0, which chooses the same way.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from minivla_core.checkpoint import read_checkpoint, save_checkpoint
from minivla_core.config import Config, camera_of, check_model_config, observation_label
from minivla_core.data.dataset import read_episode, read_index, read_meta
from minivla_core.distributed import World, join_world
from minivla_core.envs.metaworld_env import scene_of
from minivla_core.errors import CheckpointError, ConfigError, DatasetError, TrainingError
from minivla_core.model.policy import VLAPolicy
from minivla_core.model.tokenizer import WordTokenizer


class StepDataset:
    """All samples of a set of episodes, as tensors in memory (2,500 MT50 episodes at 96x96: about 6 GB of uint8
    images). Episodes are decoded one at a time straight into tensors sized for all of them (`steps`: their total),
    so a dataset never sits in memory twice."""

    def __init__(self, episodes, horizon: int, instruction_ids: dict[str, int], scene_ids: dict[str, int],
                 steps: int | None = None):
        if steps is None:
            episodes = list(episodes)
            steps = sum(len(episode.actions) for episode in episodes)
        self.states = self.chunks = self.images = None
        self.instructions = torch.zeros(steps, dtype=torch.long)
        self.scenes = torch.zeros(steps, dtype=torch.long)
        start = 0
        for episode in episodes:
            end = start + len(episode.actions)
            if self.images is None:  # shapes from the first episode: (N, cameras, 3, H, W) uint8 images
                cameras, height, width = episode.images.shape[1:4]
                self.images = torch.empty((steps, cameras, 3, height, width), dtype=torch.uint8)
                self.states = torch.empty((steps, episode.states.shape[1]), dtype=torch.float32)
                self.chunks = torch.empty((steps, horizon, episode.actions.shape[1]), dtype=torch.float32)
            padded = np.concatenate([episode.actions, np.repeat(episode.actions[-1:], horizon - 1, axis=0)])
            self.chunks[start:end] = torch.from_numpy(np.stack([padded[t: t + horizon] for t in range(end - start)]))
            self.images[start:end] = torch.from_numpy(episode.images).permute(0, 1, 4, 2, 3)
            self.states[start:end] = torch.from_numpy(episode.states)
            self.instructions[start:end] = instruction_ids[episode.instruction]
            self.scenes[start:end] = scene_ids[scene_of(episode.task)]
            start = end
        if start != steps:
            raise DatasetError(f"the episodes hold {start} steps, their index says {steps}")

    def __len__(self) -> int:
        return len(self.states)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image (B, [cameras,] 3, H, W) by up to `pad` pixels in x and y, filling with the edge
    (DrQ-style)."""
    if pad <= 0:
        return images
    if images.ndim == 5:  # every camera's image shifted on its own
        return random_shift(images.flatten(0, 1), pad, generator).view(images.shape)
    batch, channels, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    rows = (dy[:, None] + torch.arange(height))[:, None, :, None].to(images.device)
    cols = (dx[:, None] + torch.arange(width))[:, None, None, :].to(images.device)
    b = torch.arange(batch, device=images.device)[:, None, None, None]
    c = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[b, c, rows, cols]


def validation_count(episodes: int, val_fraction: float) -> int:
    """How many of `episodes` are held out for validation: their share, rounded, leaving at least one to train on."""
    return min(int(round(episodes * val_fraction)), episodes - 1) if episodes > 1 else 0


def no_validation_note(episodes: int, val_fraction: float) -> str:
    """Why there is no validation split, and what best.pt is instead."""
    if val_fraction == 0:
        why = "train.val_fraction is 0, so no episode is held out for validation"
    else:
        needed = max(2, math.floor(0.5 / val_fraction) + 1)
        while validation_count(needed, val_fraction) == 0:
            needed += 1
        why = (f"{episodes} episode{'s leave' if episodes != 1 else ' leaves'} none for validation at "
               f"train.val_fraction {val_fraction} (a validation split needs {needed} or more)")
    return f"{why}: best.pt is the epoch with the lowest training loss, not a validation loss"


def split_episodes(episodes, val_fraction: float, seed: int):
    order = list(range(len(episodes)))
    random.Random(seed).shuffle(order)
    n_val = validation_count(len(episodes), val_fraction)
    val = [episodes[i] for i in sorted(order[:n_val])]
    train = [episodes[i] for i in sorted(order[n_val:])]
    return train, val


class InstructionTable:
    """Every instruction of the dataset as padded token ids, with the scene of its task."""

    def __init__(self, policy: VLAPolicy, instructions: list[str], scenes: list[int]):
        self.tokens, self.lengths = policy.tokenize(instructions)[:2]
        self.scenes = torch.tensor(scenes)

    def foreign(self, sample_scenes: torch.Tensor, generator=None) -> torch.Tensor:
        """For each sample, a random instruction row whose task is in another scene."""
        rows = torch.zeros_like(sample_scenes)
        for scene in sample_scenes.unique():
            candidates = (self.scenes != scene).nonzero().flatten()
            picked = sample_scenes == scene
            rows[picked] = candidates[torch.randint(len(candidates), (int(picked.sum()),), generator=generator)]
        return rows


def hold_still(chunks: torch.Tensor) -> torch.Tensor:
    """No motion; the gripper keeps the demo's command at the chunk's first step."""
    still = torch.zeros_like(chunks)
    still[..., -1] = chunks[:, :1, -1]
    return still


@dataclass
class Batch:
    """What one optimisation step sees: B samples (diffusion_policy's obs / action dict, as named tensors)."""

    images: torch.Tensor  # (B, cameras, 3, H, W) floats in [0, 1]
    states: torch.Tensor  # (B, state_dim)
    tokens: torch.Tensor  # (B, max_tokens) instruction word ids
    lengths: torch.Tensor  # (B,) words per instruction
    chunks: torch.Tensor  # (B, horizon, action_dim) the demonstrated actions from this step on

    def part(self, rows: slice) -> "Batch":
        return Batch(self.images[rows], self.states[rows], self.tokens[rows], self.lengths[rows], self.chunks[rows])


def batch_inputs(data: StepDataset, index: torch.Tensor, text: InstructionTable, device, shift: int = 0,
                 generator=None, word_dropout: float = 0.0, foreign_instructions: float = 0.0) -> Batch:
    images = random_shift(data.images[index].to(device).float() / 255.0, shift, generator)
    rows, chunks = data.instructions[index], data.chunks[index]
    if foreign_instructions > 0:
        relabel = torch.rand(len(index), generator=generator) < foreign_instructions
        rows = torch.where(relabel, text.foreign(data.scenes[index], generator), rows)
        chunks = torch.where(relabel[:, None, None], hold_still(chunks), chunks)
    tokens = text.tokens[rows]
    if word_dropout > 0:  # some words become <unk> (id 1), as unseen words will at run time
        dropped = (torch.rand(tokens.shape, generator=generator) < word_dropout) & (tokens > 0)
        tokens = tokens.masked_fill(dropped, 1)
    return Batch(images, data.states[index].to(device), tokens.to(device), text.lengths[rows], chunks.to(device))


@torch.no_grad()
def validation_loss(policy, data: StepDataset, text, device, batch_size: int) -> float:
    """Diffusion loss with fixed noise draws, so epochs are comparable."""
    if len(data) == 0:
        return float("nan")
    generator = torch.Generator(device=device).manual_seed(1234)
    total = 0.0
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        batch = batch_inputs(data, index, text, device)
        cond = policy.encode(batch.images, batch.states, batch.tokens, batch.lengths)
        total += policy.head.loss(policy.action_normalizer.normalize(batch.chunks), cond, generator).item() * len(index)
    return total / len(data)


def plot_history(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="train")
    if any(loss is not None for loss in history["val_loss"]):  # None: no validation episodes
        ax.plot(epochs, [math.nan if loss is None else loss for loss in history["val_loss"]],
                label="validation (EMA weights)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("diffusion loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config: Config, resume: str | None = None, progress: bool = True) -> dict:
    """Train on train.dataset, write best.pt / last.pt / loss.png / history.json to train.out_dir."""
    tc = config.train
    check_settings(config)
    world = join_world(tc.device, tc.batch_size)  # this process alone, or its place among torchrun's processes
    device = world.device
    progress = progress and world.main
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)

    meta, episodes = load_checked_dataset(config)  # the index entries: each episode is read once, into tensors
    train_eps, val_eps = split_episodes(episodes, tc.val_fraction, tc.seed)
    policy, text, train_data, val_data = build_policy_and_data(config, meta, episodes, train_eps, val_eps)
    policy.to(device)
    ema = copy.deepcopy(policy).eval().requires_grad_(False)  # evaluation and checkpoints use these weights
    model = world.wrap(TrainingLoss(policy))  # what the optimisation step calls: gradients averaged over the world
    if tc.compile:
        model = torch.compile(model)

    steps_per_epoch = max(1, len(train_data) // tc.batch_size)
    optimizer, scheduler = make_optimizer(policy, tc, total_steps=steps_per_epoch * tc.epochs)
    chosen_on = "validation loss" if val_data is not None else "training loss"  # what picks best.pt
    note = "" if val_data is not None else no_validation_note(len(episodes), tc.val_fraction)
    history = {"train_loss": [], "val_loss": [], "seconds": []}
    start_epoch, best, best_epoch = 0, math.inf, 0
    generator = torch.Generator().manual_seed(tc.seed)  # every draw of training: batches, augmentation, noise
    if resume:
        history, best, best_epoch = restore_training(resume, policy, ema, optimizer, scheduler, generator, chosen_on)
        start_epoch = len(history["train_loss"])
    history.update(best_chosen_on=chosen_on, note=note)

    out_dir = Path(tc.out_dir)
    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    env_info = checkpoint_env(config, meta, episodes)
    started = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    bar = tqdm(total=steps_per_epoch * tc.epochs, initial=start_epoch * steps_per_epoch, desc="train", unit="step",
               disable=not progress)
    if note:
        bar.write(f"note: {note}")
    for epoch in range(start_epoch, tc.epochs):
        train_loss = world.mean(train_one_epoch(model, policy, ema, optimizer, scheduler, train_data, text, tc,
                                                world, generator, epoch, steps_per_epoch, bar))
        if not world.main:  # rank 0 validates and writes; the others go on to the next epoch
            continue
        val = validation_loss(ema, val_data, text, device, 512) if val_data is not None else None
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val)  # None (null in history.json) without validation episodes
        history["seconds"].append(time.perf_counter() - started)
        info = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val, "best_chosen_on": chosen_on,
                "train_episodes": len(train_eps), "val_episodes": len(val_eps), "train_samples": len(train_data),
                "seconds": history["seconds"][-1], "dataset": str(tc.dataset), "train_config": asdict(tc)}
        if (val if val is not None else train_loss) < best:
            best, best_epoch = (val if val is not None else train_loss), epoch + 1
            save_checkpoint(out_dir / "best.pt", ema, env_info, info)
        training = {"model": policy.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "history": history, "best_loss": best,
                    "best_epoch": best_epoch, "best_chosen_on": chosen_on, "generator": generator.get_state()}
        save_checkpoint(out_dir / "last.pt", ema, env_info, info, training)
        (out_dir / "history.json").write_text(json.dumps(history, indent=1))
        plot_history(history, out_dir / "loss.png")
        bar.write(f"epoch {epoch + 1}/{tc.epochs}  train {train_loss:.4f}  val "
                  f"{'n/a (none held out)' if val is None else f'{val:.4f}'}")
    bar.close()
    world.close()
    # best_val: the lowest validation loss (None without validation episodes; best.pt was then chosen on best_loss,
    # the lowest training loss)
    return {"history": history, "out_dir": str(out_dir), "best_val": best if val_data is not None else None,
            "best_loss": best, "best_epoch": best_epoch, "chosen_on": chosen_on, "note": note,
            "seconds": history["seconds"][-1] if history["seconds"] else 0.0}


# --- the steps of train(), in the order it takes them -----------------------------------------------------

def check_settings(config: Config) -> None:
    for name in ("val_fraction", "word_dropout", "foreign_instructions"):
        value = getattr(config.train, name)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"train.{name} is a share of samples: it must be in [0, 1), got {value}")
    check_model_config(config.model)


def load_checked_dataset(config: Config):
    """The dataset's meta and index entries (one per episode: task, instruction, steps), refused if it was recorded
    for another env than config.env. Each episode file is read and checked when the training tensors are built."""
    tc = config.train
    meta, episodes = read_meta(tc.dataset), read_index(tc.dataset)
    if not episodes:
        raise DatasetError(f"dataset {tc.dataset} has no episodes")
    if meta["image_size"] != config.env.image_size:
        raise DatasetError(f"dataset {tc.dataset} has {meta['image_size']}px images but env.image_size is "
                           f"{config.env.image_size}")
    if meta["observation"] != config.env.observation:
        raise DatasetError(f"dataset {tc.dataset} holds {observation_label(meta['observation'])} states but "
                           f"env.observation is {config.env.observation!r}; collect a new dataset, or set "
                           f"env.observation to {meta['observation']!r} on purpose")
    if meta["extra_cameras"] != config.env.extra_cameras:
        raise DatasetError(f"dataset {tc.dataset} has the extra cameras {meta['extra_cameras']} but "
                           f"env.extra_cameras is {config.env.extra_cameras}")
    return meta, episodes


def build_policy_and_data(config: Config, meta: dict, episodes, train_eps, val_eps):
    """A fresh policy whose vocabulary and normalisers come from the training data, and the data as tensors."""
    tc, mc = config.train, config.model
    scene_of_instruction = {e["instruction"]: scene_of(e["task"]) for e in episodes}
    instructions = sorted(scene_of_instruction)
    scene_ids = {scene: i for i, scene in enumerate(sorted(set(scene_of_instruction.values())))}
    if tc.foreign_instructions > 0 and len(scene_ids) < 2:
        raise ConfigError(f"train.foreign_instructions needs tasks from at least two scenes; {tc.dataset} "
                          f"has one ({next(iter(scene_ids))})")
    vocab = WordTokenizer.from_texts(instructions, mc.stem_words).vocab
    policy = VLAPolicy(mc, vocab, meta["state_dim"], meta["action_dim"], meta["image_size"],
                       cameras=1 + len(meta["extra_cameras"]))
    text = InstructionTable(policy, instructions, [scene_ids[scene_of_instruction[i]] for i in instructions])
    ids = {instruction: i for i, instruction in enumerate(instructions)}
    def data(entries):
        return StepDataset((read_episode(tc.dataset, meta, entry) for entry in entries), mc.horizon, ids, scene_ids,
                           steps=sum(entry["steps"] for entry in entries))

    train_data = data(train_eps)
    val_data = data(val_eps) if val_eps else None
    policy.state_normalizer.fit(train_data.states)
    policy.action_normalizer.fit(train_data.chunks)
    return policy, text, train_data, val_data


def make_optimizer(policy: VLAPolicy, tc, total_steps: int):
    """AdamW with a linear warm-up, then a cosine decay to zero at the last step."""
    optimizer = torch.optim.AdamW(policy.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)

    def lr_factor(step: int) -> float:
        if step < tc.warmup_steps:
            return (step + 1) / tc.warmup_steps
        progress = min(1.0, (step - tc.warmup_steps) / max(1, total_steps - tc.warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def restore_training(resume: str, policy, ema, optimizer, scheduler, generator: torch.Generator,
                     chosen_on: str) -> tuple[dict, float, int]:
    """Weights, optimiser, schedule and the random stream from a last.pt, so that the epochs after it are the ones an
    uninterrupted run would have trained; returns its history, and the loss and epoch of its best.pt where that was
    chosen on `chosen_on` too (else inf and 0: the next epoch's best.pt replaces it)."""
    state = read_checkpoint(resume).get("training")
    if state is None:
        raise ConfigError(f"{resume} has no training state; resume from a last.pt")
    policy.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "generator" in state:  # last.pt files before 2026-12-04 lack it: the stream starts again from a new seed
        try:
            generator.set_state(state["generator"])
        except (RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{resume}: its random-stream state is damaged ({exc}); cannot resume") from None
    else:
        generator.manual_seed(generator.initial_seed() + len(state["history"]["train_loss"]))
    if state.get("best_chosen_on", "validation loss") != chosen_on:  # last.pt files before it record best_val only
        return state["history"], math.inf, 0
    return state["history"], float(state.get("best_loss", state.get("best_val"))), int(state.get("best_epoch", 0))


def checkpoint_env(config: Config, meta: dict, episodes) -> dict:
    """What a checkpoint records of the env it was trained for (checkpoint.py reads it back)."""
    tasks = sorted({e["task"] for e in episodes})
    camera = meta["camera"] or camera_of(config.env)
    return {"task": tasks[0], "tasks": tasks, "observation": meta["observation"], "camera": camera["name"],
            "camera_position": camera["position"], "extra_cameras": meta["extra_cameras"],
            "image_size": meta["image_size"]}


class TrainingLoss(torch.nn.Module):
    """The policy's diffusion loss as a module's forward, which DistributedDataParallel needs to see to average
    gradients (distributed.py)."""

    def __init__(self, policy: VLAPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, batch: Batch, noise_samples: int, noise) -> torch.Tensor:
        return self.policy.compute_loss(batch.images, batch.states, batch.tokens, batch.lengths, batch.chunks,
                                        noise_samples, noise)


def train_one_epoch(model, policy, ema, optimizer, scheduler, data: StepDataset, text: InstructionTable, tc,
                    world: World, generator: torch.Generator, epoch: int, steps: int, bar) -> float:
    """One pass over the shuffled training samples; returns the mean loss (of this process's shares).

    Every random draw of a step (which samples, augmentation, diffusion levels and noise) is made for the whole
    global batch from `generator`, in every process alike; each process then keeps its share (world.share), so
    the update does not depend on how many processes share the batch."""
    policy.train()
    order = torch.randperm(len(data), generator=generator)
    head = policy.head
    total = 0.0
    for step in range(steps):
        index = order[step * tc.batch_size: (step + 1) * tc.batch_size]
        batch = batch_inputs(data, index, text, world.device, tc.image_shift, generator, tc.word_dropout,
                             tc.foreign_instructions)
        levels = torch.randint(0, head.train_steps, (tc.noise_samples_per_obs, len(index)), generator=generator)
        noise = torch.randn((tc.noise_samples_per_obs, *batch.chunks.shape), generator=generator)
        mine = world.share(len(index))
        loss = model(batch.part(mine), tc.noise_samples_per_obs,
                     (levels[:, mine].flatten().to(world.device), noise[:, mine].flatten(0, 1).to(world.device)))
        if not torch.isfinite(loss):  # one NaN step would make every weight NaN, and the EMA with it
            raise TrainingError(f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopped "
                                f"without writing this epoch (lower train.lr, or check {tc.dataset})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        update_ema(ema, policy, tc.ema_decay, scheduler.last_epoch)
        total += loss.item()
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
    return total / steps


@torch.no_grad()
def update_ema(ema, policy, max_decay: float, step: int) -> None:
    """Exponential moving average of the weights, with a decay that warms up over the first steps."""
    decay = min(max_decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.parameters(), policy.parameters()):
        p_ema.lerp_(p, 1 - decay)
    for b_ema, b in zip(ema.buffers(), policy.buffers()):
        b_ema.copy_(b)
