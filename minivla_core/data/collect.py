"""Scripted-expert demonstrations, streamed to disk one episode at a time.

Only the frames of the episodes being recorded are in memory, so memory stays flat however many
episodes are collected. Episodes where the expert fails are dropped, and counted per task (some of
Meta-World's experts fail part of the time). An episode ends at the first step that reports success,
or `collect.steps_after_success` steps later: the expert is still moving at full speed when success is
first reported, and without those steps a policy never sees the hand stop at a goal or come back to one
it overshot. Several tasks go into one dataset (collect.tasks, "mt50" for all fifty), each episode
labelled with its task's instruction, one of its training paraphrases in turn (collect.paraphrases), or
LeRobot's description of the task (collect.lerobot_descriptions).

Resumable: `collect.episodes` is what each task should hold in the end. A task's episodes are recorded
in layout order and each is on disk before the next is counted, so running the same command again after
an interruption records only what is missing, on the layouts after the last one kept.

Parallel: with collect.workers > 1, worker processes each run whole tasks and send every finished
episode to this process, the dataset's only writer. A task's episodes are the same ones whichever
worker records them (its layouts depend only on the seed and the layout number); only the order of
tasks in the index differs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from minivla_core.actions import ACTION_DIM
from minivla_core.config import CollectConfig, EnvConfig, camera_of, state_dim_of
from minivla_core.data.dataset import DatasetWriter
from minivla_core.envs.metaworld_env import MetaWorldEnv, check_task, make_expert, paraphrases
from minivla_core.envs.metaworld_suites import expand_suites, lerobot_description
from minivla_core.workers import run_in_workers


@dataclass
class CollectResult:
    kept: int  # successful episodes recorded by this run
    dropped: int  # episodes where the expert failed
    steps: int
    wanted: int  # successful episodes the run was asked to record (those the folder already held not counted)
    seconds: float = 0.0
    tasks: dict[str, "CollectResult"] = field(default_factory=dict)  # the same per task


@dataclass
class TaskJob:
    """What one task still needs: `wanted` more successful episodes on layouts from `first_layout` on."""

    env: EnvConfig  # env.task is the task
    first_layout: int
    wanted: int
    held: int  # successful episodes the dataset already holds (the paraphrase rotation goes on from there)
    max_attempts: int
    steps_after_success: int
    instructions: list[str]


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


def expert_episodes(job: TaskJob):
    """The task's episodes in layout order: yields ("kept", layout, (images, states, actions), instruction) for
    each success and ("dropped", layout, None, None) for each failure, until `job.wanted` successes or
    `job.max_attempts` tries."""
    env = MetaWorldEnv(job.env)
    expert = make_expert(env.task)
    kept = 0
    try:
        for layout in range(job.first_layout, job.first_layout + job.max_attempts):
            if kept == job.wanted:
                return
            images, states, actions, success = run_expert_episode(env, expert, layout, job.steps_after_success)
            if not success:
                yield "dropped", layout, None, None
                continue
            instruction = job.instructions[(job.held + kept) % len(job.instructions)]
            kept += 1
            yield "kept", layout, (np.stack(images), np.stack(states), np.stack(actions)), instruction
    finally:
        env.close()


def collect(env_config: EnvConfig, config: CollectConfig, progress: bool = True) -> CollectResult:
    """Until each task (config.tasks, or env.task) holds `config.episodes` successful episodes in config.out."""
    config.validate("collect")
    tasks = [check_task(task) for task in expand_suites(config.tasks or [env_config.task])]  # every name first
    started = time.perf_counter()
    with DatasetWriter(config.out, env_config.image_size, state_dim_of(env_config.observation), ACTION_DIM,
                       observation=env_config.observation, camera=camera_of(env_config),
                       extra_cameras=env_config.extra_cameras) as writer:
        jobs = [plan_task(writer, dataclasses.replace(env_config, task=task), config) for task in tasks]
        results = {job.env.task: CollectResult(0, 0, 0, job.wanted) for job in jobs}
        held = [job for job in jobs if job.held]
        if held and progress:
            print(f"{writer.root} already holds episodes of {len(held)} of the {len(jobs)} tasks; "
                  f"{sum(job.held for job in held)} count towards the {config.episodes} per task")
        bar = tqdm(total=sum(job.wanted for job in jobs), desc="collect", unit="ep", disable=not progress)
        to_run = [job for job in jobs if job.wanted]
        episodes = (run_spread(to_run, config.workers) if config.workers > 1 and len(to_run) > 1
                    else run_here(to_run))
        try:
            for task, outcome, layout, arrays, instruction in episodes:
                result = results[task]
                if outcome == "dropped":
                    result.dropped += 1
                    bar.set_postfix(dropped=sum(r.dropped for r in results.values()))
                    continue
                images, states, actions = arrays
                writer.append(images, states, actions, task=task, instruction=instruction, success=True,
                              source="collect", seed=env_config.seed, episode=layout,
                              steps_after_success=config.steps_after_success)
                result.kept += 1
                result.steps += len(actions)
                bar.update(1)
        finally:
            bar.close()
            episodes.close()  # stops the workers if the writer failed
    seconds = time.perf_counter() - started
    return CollectResult(sum(r.kept for r in results.values()), sum(r.dropped for r in results.values()),
                         sum(r.steps for r in results.values()), sum(r.wanted for r in results.values()),
                         seconds, results)


def plan_task(writer: DatasetWriter, env_config: EnvConfig, config: CollectConfig) -> TaskJob:
    task, seed = env_config.task, env_config.seed
    if config.lerobot_descriptions:
        instructions = [lerobot_description(task)]
    elif config.paraphrases:
        instructions = paraphrases(task)
    else:
        instructions = paraphrases(task)[:1]
    held = len(writer.held(task, seed))
    wanted = max(0, config.episodes - held)
    return TaskJob(env_config, writer.next_episode(task, seed), wanted, held,
                   max(wanted, int(wanted * config.max_attempts_factor)), config.steps_after_success, instructions)


def run_here(jobs: list[TaskJob]):
    """Every job in this process, one after the other: (task, outcome, layout, arrays, instruction) tuples."""
    for job in jobs:
        for outcome, layout, arrays, instruction in expert_episodes(job):
            yield job.env.task, outcome, layout, arrays, instruction


def run_spread(jobs: list[TaskJob], workers: int):
    """The same tuples as run_here, from `workers` processes each running whole tasks, as episodes finish."""
    for number, (outcome, layout, arrays, instruction) in run_in_workers(expert_episodes, jobs, workers):
        yield jobs[number].env.task, outcome, layout, arrays, instruction
