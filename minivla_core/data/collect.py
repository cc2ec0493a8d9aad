"""Scripted-expert demonstrations, streamed to disk one episode at a time.

Only the frames of the episode being recorded are in memory, so memory stays flat however many
episodes are collected. Episodes where the expert fails are dropped (and counted). An episode
ends at the first step that reports success, or `collect.steps_after_success` steps later: the
expert is still moving at full speed when success is first reported, and without those steps a
policy never sees the hand stop at a goal or come back to one it overshot. Several tasks go into
one dataset (collect.tasks), each episode labelled with its task's instruction, or with one of
its training paraphrases in turn (collect.paraphrases).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from minivla_core.actions import ACTION_DIM
from minivla_core.config import CollectConfig, EnvConfig, camera_of, state_dim_of
from minivla_core.data.dataset import DatasetWriter
from minivla_core.errors import ConfigError
from minivla_core.envs.metaworld_env import MetaWorldEnv, check_task, make_expert, paraphrases


@dataclass
class CollectResult:
    kept: int
    dropped: int
    steps: int
    wanted: int  # successful episodes asked for


def run_expert_episode(env: MetaWorldEnv, expert, episode: int, steps_after_success: int = 0):
    """One episode with the expert, kept going for `steps_after_success` steps after its first success
    (or until the step limit); returns (images, states, actions, success)."""
    obs = env.reset(episode)
    images, states, actions = [], [], []
    succeeded_at = None
    while not env.done:
        # the expert reads privileged state (object poses, goal); the dataset keeps what the policy will see
        action = np.clip(expert.get_action(obs.privileged), -1.0, 1.0).astype(np.float32)
        images.append(obs.images)
        states.append(obs.state)
        actions.append(action)
        obs = env.step(action)
        if obs.success and succeeded_at is None:
            succeeded_at = env.step_count
        if succeeded_at is not None and env.step_count - succeeded_at >= steps_after_success:
            break
    return images, states, actions, succeeded_at is not None


def collect(env_config: EnvConfig, config: CollectConfig, progress: bool = True) -> CollectResult:
    """`config.episodes` successful episodes of each task (config.tasks, or env.task) into one dataset.

    Collecting again into a folder adds episodes on layouts after the ones it already holds."""
    tasks = [check_task(task) for task in config.tasks or [env_config.task]]  # every name, before any work
    if config.steps_after_success < 0:
        raise ConfigError(f"collect.steps_after_success must be 0 or more, got {config.steps_after_success}")
    total = CollectResult(0, 0, 0, 0)
    with DatasetWriter(config.out, env_config.image_size, state_dim_of(env_config.observation), ACTION_DIM,
                       observation=env_config.observation, camera=camera_of(env_config),
                       extra_cameras=env_config.extra_cameras) as writer:
        for task in tasks:
            result = collect_task(dataclasses.replace(env_config, task=task), config, writer, progress)
            total = CollectResult(total.kept + result.kept, total.dropped + result.dropped,
                                  total.steps + result.steps, total.wanted + result.wanted)
    return total


def collect_task(env_config: EnvConfig, config: CollectConfig, writer: DatasetWriter, progress: bool) -> CollectResult:
    env = MetaWorldEnv(env_config)
    expert = make_expert(env.task)
    instructions = paraphrases(env.task) if config.paraphrases else [env.instruction]
    first = writer.next_episode(env.task, env_config.seed)
    max_attempts = max(config.episodes, int(config.episodes * config.max_attempts_factor))
    kept = dropped = steps = 0
    bar = tqdm(total=config.episodes, desc=f"collect {env.task}", unit="ep", disable=not progress)
    if first and progress:
        bar.write(f"{writer.root} already holds {env.task} layouts 0..{first - 1} of seed {env_config.seed}; "
                  f"continuing from layout {first}")
    try:
        for episode in range(first, first + max_attempts):
            if kept == config.episodes:
                break
            images, states, actions, success = run_expert_episode(env, expert, episode, config.steps_after_success)
            if not success:
                dropped += 1
                bar.set_postfix(dropped=dropped)
                continue
            writer.append(images, states, actions, task=env.task, instruction=instructions[kept % len(instructions)],
                          success=True, source="collect", seed=env_config.seed, episode=episode,
                          steps_after_success=config.steps_after_success)
            kept += 1
            steps += len(actions)
            bar.update(1)
    finally:
        bar.close()
        env.close()
    return CollectResult(kept, dropped, steps, config.episodes)
