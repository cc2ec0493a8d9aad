"""Closed-loop evaluation: run a checkpoint in the real MuJoCo env and count successes.

Episodes use the layouts of `eval.seed`, never those of collection, and every figure says the role of its seed
(config.SEED_ROLES): 1000 (the default) is a validation seed, whose layouts chose the recipe, so its figures are
validation figures; test seeds (2000 and up) give the figures to report; a collection seed (0-999) is refused. An
episode ends at its first successful step or after `env.max_episode_steps` steps. Several tasks give a per-task
table and the average.

`eval.suite` (mt50, mt10 or a list of tasks) runs LeRobot's Meta-World protocol (docs/evaluation.md): LeRobot's
description of the task as the instruction (eval.instructions lerobot; our own instructions are listed as a
difference), success at any step, 500 steps, 10 episodes per task unless told otherwise, and the difficulty-
group table beside the published rows (envs/metaworld_suites.py). Tasks the checkpoint was not trained on are run
and counted like the others (an MT50 figure covers all 50 tasks), and marked as not trained on. Where the
checkpoint or the settings differ from the protocol (another camera, privileged state, held-out paraphrases ...),
each difference is listed beside the figure.

The env is the checkpoint's (cameras, the scene camera's placement, image size); its observation protocol must
be `env.observation` ("proprio" unless set), so a privileged-state policy never runs unnoticed.

"Does it look?" (eval.image_ablation): the policy gets, instead of the camera images (every camera),
    black     an all-black image
    frozen    the episode's first image, for the whole episode
    shuffled  the image of another layout at the same step, where the scripted expert is doing
              the task: a real-looking scene that does not match the arm's state
A policy that uses its camera fails under all three; one that ignores it does not notice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from minivla_core.checkpoint import load_policy, policy_from_payload, read_checkpoint
from minivla_core.checkpoint import check_observation_matches
from minivla_core.config import (CHOICES, VALIDATION_SEED, EnvConfig, EvalConfig, check_value, figure_label,
                                 observation_label, seed_role)
from minivla_core.envs import check_sim_task, make_env, make_sim_expert, sim_instruction
from minivla_core.envs.metaworld_env import INSTRUCTIONS, instruction_for, paraphrases
from minivla_core.envs.metaworld_suites import (
    GROUP_OF, PROTOCOL, PUBLISHED, PUBLISHED_SOURCE, group_table, group_table_markdown, lerobot_description, percent,
    suite_name,
    suite_tasks)
from minivla_core.errors import CheckpointError, ConfigError, NonFiniteActions
from minivla_core.model.policy import PolicyRunner
from minivla_core.timed import ChunkSchedule, run_timed_episode
from minivla_core.view import PolicyView
from minivla_core.workers import run_in_workers


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (sensible at 0% and 100%, unlike +-1.96 sd)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EvalResult:
    task: str
    checkpoint: str
    observation: str  # "proprio", or "full (privileged state)"
    image_ablation: str  # "none", "black", "frozen" or "shuffled"
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_steps_to_success: float | None
    seed: int
    inference_steps: int
    n_action_steps: int
    seconds: float
    per_episode: list[dict] = field(default_factory=list)
    # "classic" (each chunk sampled at once), or timed execution on a simulated clock: "timed: latency 115 ms, 20 Hz,
    # seam inpaint"
    timing: str = "classic"

    @property
    def refused(self) -> int:
        """Episodes ended early, failed, because the policy refused an observation (a state far outside its
        training states): what the policy node does on a robot, where it holds instead of acting."""
        return sum("refused" in e for e in self.per_episode)

    def summary(self) -> str:
        low, high = self.ci95
        steps = f"{self.mean_steps_to_success:.1f}" if self.mean_steps_to_success is not None else "-"
        refused = f"; {self.refused} ended failed on a refused observation" if self.refused else ""
        timed = ""
        if self.timing != "classic":
            held = sum(e["executor"]["held"] for e in self.per_episode)
            late = sum(e["executor"]["late"] for e in self.per_episode)
            timed = f"; {self.timing}: {held} steps held still, {late} actions late (the chunk before ran them)"
        return (f"{self.task}: {self.successes}/{self.episodes} = {100 * self.success_rate:.1f}% "
                f"(95% CI {100 * low:.1f}-{100 * high:.1f}%), mean steps to success {steps}; "
                f"observation {self.observation}, images {self.image_ablation}{refused}{timed}")


def env_config_for(checkpoint_env: dict, base: EnvConfig, task: str | None = None) -> EnvConfig:
    """The env the checkpoint was trained on (observation, cameras, image size), on `task` if given."""
    return EnvConfig(task=task or checkpoint_env["task"], observation=checkpoint_env["observation"],
                     camera=checkpoint_env["camera"], camera_position=list(checkpoint_env["camera_position"]),
                     extra_cameras=list(checkpoint_env["extra_cameras"]),
                     image_size=checkpoint_env["image_size"], max_episode_steps=base.max_episode_steps,
                     seed=base.seed)


IMAGE_ABLATIONS = CHOICES["eval.image_ablation"]


class ImageAblation:
    """What the policy sees instead of the camera image (see the module docstring)."""

    def __init__(self, mode: str, env_config: EnvConfig):
        self.mode = check_value("eval.image_ablation", mode)
        self.other = self.expert = None
        if mode == "shuffled":  # another stream of layouts, played by the expert
            self.other = make_env(dataclasses.replace(env_config, seed=env_config.seed + 7919))
            self.expert = make_sim_expert(self.other.task)

    def reset(self, episode: int, first_images: np.ndarray) -> None:
        self.first_images = first_images
        if self.other is not None:
            self.other_obs = self.other.reset(episode)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """The images (one per camera) the policy gets at this step; call once per step."""
        if self.mode == "black":
            return np.zeros_like(images)
        if self.mode == "frozen":
            return self.first_images
        if self.mode == "shuffled":
            shown = self.other_obs.images
            if not (self.other_obs.success or self.other.done):
                action = np.clip(self.expert.get_action(self.other_obs.privileged), -1.0, 1.0)
                self.other_obs = self.other.step(action)
            return shown
        return images

    def close(self) -> None:
        if self.other is not None:
            self.other.close()


def write_video(path: Path, frames: list[np.ndarray], fps: int = 20, scale: int = 4) -> None:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width * scale, height * scale))
    for frame in frames:
        big = cv2.resize(frame, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)
        writer.write(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    writer.release()


def eval_instructions(task: str, mode: str, all_tasks: list[str]) -> list[str]:
    """The instructions an evaluation of `task` cycles through.

    plain: the task's own instruction. held_out: its paraphrases that were never trained on.
    other_task: the plain instruction of the next task in the list (does language matter?).
    lerobot: LeRobot's description of the task (its Meta-World protocol's instruction)."""
    check_value("eval.instructions", mode)  # a bare name: bench scripts give their own
    if mode == "plain":
        return [sim_instruction(task)]
    if mode == "lerobot":
        return [lerobot_description(task)]
    if mode == "held_out":
        return paraphrases(task, held_out=True) or [instruction_for(task)]
    known = [t for t in (all_tasks if len(all_tasks) > 1 else list(INSTRUCTIONS)) if t != task] or [task]
    following = [t for t in known if t > task] + [t for t in known if t < task]
    return [instruction_for(following[0])]


def broken_weights(checkpoint: str, task: str, episode: int, step: int, exc: NonFiniteActions) -> CheckpointError:
    """The error that ends an evaluation whose checkpoint samples NaN or infinite actions: an input problem (the
    checkpoint), not a failed episode. Refused observations (a state far outside the training states) are another
    matter: the episode ends failed, as the policy node would hold, and the evaluation goes on."""
    return CheckpointError(f"checkpoint {checkpoint}: its weights produce non-finite actions (NaN or infinite) from "
                           f"an observation they accept ({task}, episode {episode}, step {step}; {exc}); the weights "
                           f"are broken (a diverged training run, or damaged or rescaled weights): nothing to evaluate")


def evaluate_task(policy, payload: dict, task: str, eval_config: EvalConfig, env_base: EnvConfig,
                  instructions: list[str], inference_steps: int | None, n_action_steps: int | None,
                  progress: bool, view: PolicyView | None = None) -> EvalResult:
    """`view`: where the episodes are shown (view.py; None: nowhere)."""
    view = view or PolicyView()
    env_config = env_config_for(payload["env"], env_base, task)
    env_config.seed = eval_config.seed
    env = make_env(env_config)
    ablation = ImageAblation(eval_config.image_ablation, env_config)
    if (payload["state_dim"], payload["action_dim"]) != (env.state_dim, env.action_dim):
        env.close()
        ablation.close()
        raise CheckpointError(f"checkpoint {eval_config.checkpoint} expects state/action sizes "
                              f"{payload['state_dim']}/{payload['action_dim']}, task {env.task} has "
                              f"{env.state_dim}/{env.action_dim}")
    runner = PolicyRunner(policy, instructions[0], n_action_steps, inference_steps, seed=eval_config.noise_seed,
                          engine=eval_config.engine)
    schedule = None  # the classic loop; with a latency, timed execution on a simulated clock
    if eval_config.latency > 0:
        schedule = ChunkSchedule(1.0 / eval_config.step_rate, policy.config.horizon, runner.n_action_steps)
    video_dir = Path(eval_config.video_dir) if eval_config.video_dir else None
    if video_dir:
        video_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    per_episode = []
    bar = tqdm(range(eval_config.episodes), desc=f"eval {env.task}", unit="ep", disable=not progress)
    try:
        for episode in bar:
            instruction = instructions[episode % len(instructions)]
            if instruction != runner.instruction:
                runner.set_instruction(instruction)
            obs = env.reset(episode)
            runner.reset(episode)  # the episode's own noise: the graph in lockstep draws the same
            ablation.reset(episode, obs.images)
            view.start_episode(env.task, episode, instruction, env.cameras, env.hand_step)
            frames = [obs.image]
            refused, executor = None, {}
            if schedule is not None:  # timed execution on a simulated clock
                try:
                    obs, counts, refused = run_timed_episode(env, runner, schedule, obs, ablation,
                                                             eval_config.latency, eval_config.seam,
                                                             frames if video_dir else None, view)
                except NonFiniteActions as exc:
                    raise broken_weights(eval_config.checkpoint, env.task, episode, env.step_count, exc) from exc
                executor = {"executor": dataclasses.asdict(counts)}
            while schedule is None and not obs.success and not env.done:
                seen = ablation(obs.images)
                view.observe(seen, obs.state)
                try:
                    action = runner.act(seen, obs.state)
                except NonFiniteActions as exc:  # not this episode's doing: no episode of this checkpoint can run
                    raise broken_weights(eval_config.checkpoint, env.task, episode, env.step_count, exc) from exc
                except ValueError as exc:  # a state far outside everything the checkpoint was trained on:
                    refused = f"step {env.step_count}: {exc}"  # the policy node would hold; the episode fails
                    break
                if runner.step_in_chunk == 0:  # a chunk sampled from this observation
                    view.chunk(obs.state, runner.last_chunk, runner.last_sample_seconds,
                               lambda: runner.denoising(seen, obs.state))
                view.action(action, runner.step_in_chunk)
                obs = env.step(action)
                if video_dir:
                    frames.append(obs.image)
            view.end_episode(obs.success, env.step_count)
            per_episode.append({"episode": episode, "success": obs.success, "steps": env.step_count,
                                "instruction": instruction, **({"refused": refused} if refused else {}), **executor})
            if video_dir:
                write_video(video_dir / f"{env.task}_ep{episode:03d}_{'success' if obs.success else 'fail'}.mp4",
                            frames)
            bar.set_postfix(success=f"{sum(e['success'] for e in per_episode)}/{len(per_episode)}")
    finally:
        bar.close()
        env.close()
        ablation.close()

    successes = sum(e["success"] for e in per_episode)
    steps = [e["steps"] for e in per_episode if e["success"]]
    n = len(per_episode)
    return EvalResult(task=env_config.task, checkpoint=str(eval_config.checkpoint),
                      observation=observation_label(env_config.observation), image_ablation=ablation.mode,
                      episodes=n, successes=successes,
                      success_rate=successes / n if n else 0.0, ci95=wilson_interval(successes, n),
                      mean_steps_to_success=float(np.mean(steps)) if steps else None, seed=eval_config.seed,
                      inference_steps=runner.inference_steps, n_action_steps=runner.n_action_steps,
                      seconds=time.perf_counter() - started, per_episode=per_episode,
                      timing=timing_label(eval_config))


@dataclass
class MultiEvalResult:
    """Several tasks: per-task results and their average; for a suite, the difficulty-group table too."""

    checkpoint: str
    instructions: str
    per_task: dict[str, EvalResult]
    seed: int = VALIDATION_SEED  # the layouts' seed, whose role (validation or test) every figure states
    suite: str = ""  # eval.suite, when a suite was run
    trained: list[str] = field(default_factory=list)  # the tasks the checkpoint was trained on
    deviations: list[str] = field(default_factory=list)  # where the run differs from LeRobot's protocol (suites)

    @property
    def success_rate(self) -> float:
        return float(np.mean([r.success_rate for r in self.per_task.values()]))

    @property
    def role(self) -> str:
        return seed_role(self.seed)

    @property
    def figure(self) -> str:
        """What the figures are: "validation figure (seed 1000, used to choose ...)" or "test figure (...)"."""
        return figure_label(self.seed)

    @property
    def not_trained(self) -> list[str]:
        return [task for task in self.per_task if task not in self.trained]

    def groups(self) -> dict:
        """The difficulty-group table of a suite (envs/metaworld_suites.py)."""
        return group_table({task: r.success_rate for task, r in self.per_task.items()})

    @property
    def only(self) -> EvalResult:
        """The result of a single-task evaluation."""
        (result,) = self.per_task.values()
        return result

    def summary(self) -> str:
        if len(self.per_task) == 1 and not self.suite:
            return f"{self.only.summary()}\n{self.figure}"
        lines = [f"{'task':<30} {'success':>9} {'95% CI':>13} {'mean steps':>11}"]
        for task, r in self.per_task.items():
            steps = f"{r.mean_steps_to_success:.1f}" if r.mean_steps_to_success is not None else "-"
            untrained = "  (not trained on)" if self.suite and task not in self.trained else ""
            lines.append(f"{task:<30} {r.successes:>3}/{r.episodes:<3} {100 * r.ci95[0]:>5.0f}-{100 * r.ci95[1]:.0f}% "
                         f"{steps:>11}{untrained}")
        first = next(iter(self.per_task.values()))
        lines.append(f"{'average':<30} {100 * self.success_rate:>8.1f}%   (instructions: {self.instructions}; "
                     f"observation {first.observation}; images {first.image_ablation})")
        if self.suite:
            lines += ["", self.group_summary()]
        lines.append(self.figure)
        return "\n".join(lines)

    def group_summary(self) -> str:
        """The group table as text, our row first, then the published ones (theirs)."""
        table = self.groups()
        rows = [(f"ours, {suite_name(self.suite)}", [row["success"] for row in table["groups"].values()],
                 table["average"])]
        rows += [(f"{name} (theirs)", list(figures[:-1]), figures[-1]) for name, figures in PUBLISHED.items()]
        names = list(table["groups"])
        lines = [f"{'difficulty groups, success %':<30} " + " ".join(f"{name:>10}" for name in names)
                 + f" {'average':>10}"]
        for label, figures, average in rows:
            lines.append(f"{label:<30} " + " ".join(f"{percent(x):>10}" for x in figures) + f" {percent(average):>10}")
        shown = [f"{g} {row['tasks']}/{row['of']}" for g, row in table["groups"].items() if row["tasks"] < row["of"]]
        if shown:
            lines.append(f"partial suite (tasks per group: {', '.join(shown)}): not comparable with the published "
                         f"rows")
        if self.not_trained:
            lines.append(f"{len(self.not_trained)} of {len(self.per_task)} tasks were not trained on by this "
                         f"checkpoint; they are run and counted like the others")
        for deviation in self.deviations:
            lines.append(f"differs from LeRobot's protocol: {deviation}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        results = list(self.per_task.values())
        steps = [e["steps"] for r in results for e in r.per_episode if e["success"]]
        data = {"task": results[0].task if len(results) == 1 else ",".join(self.per_task),
                "checkpoint": self.checkpoint, "instructions": self.instructions,
                "observation": results[0].observation, "image_ablation": results[0].image_ablation,
                "success_rate": self.success_rate, "episodes": sum(r.episodes for r in results),
                "successes": sum(r.successes for r in results),
                "mean_steps_to_success": float(np.mean(steps)) if steps else None,
                "per_task": {task: result_dict(r) for task, r in self.per_task.items()},
                "seed": self.seed, "role": self.role, "figure": self.figure}
        if self.suite:
            for task, entry in data["per_task"].items():
                entry.update(group=GROUP_OF[task], trained=task in self.trained)
            data["suite"] = {"name": suite_name(self.suite), "given": self.suite, "tasks": list(self.per_task),
                             "not_trained": self.not_trained, "protocol": PROTOCOL, "deviations": self.deviations,
                             **self.groups()}
            data["suite"]["published"] = {"source": PUBLISHED_SOURCE, "note": "their protocol, their numbers",
                                          "columns": ["easy", "medium", "hard", "very hard", "average"],
                                          "rows": {name: list(row) for name, row in PUBLISHED.items()}}
        if len(results) == 1 and not self.suite:  # single task: its own fields at the top level too
            data.update({k: v for k, v in result_dict(results[0]).items() if k not in data or k == "success_rate"})
        return data

    def markdown(self) -> str:
        """A suite's results as a page: what was run, the group table beside the published rows, each task."""
        first = next(iter(self.per_task.values()))
        lines = [f"# Meta-World {suite_name(self.suite)}, LeRobot's protocol", "",
                 f"Checkpoint: {self.checkpoint}  ",
                 f"**{self.figure[0].upper()}{self.figure[1:]}**; {first.episodes} episode"
                 f"{'s' if first.episodes > 1 else ''} per task (episodes 0-{first.episodes - 1} of the seed's "
                 f"layouts); observation {first.observation}; instructions {self.instructions}; "
                 f"{first.inference_steps} DDIM steps, {first.n_action_steps} actions per chunk",
                 "", group_table_markdown(self.groups(), f"this checkpoint ({self.role} seed {self.seed})"), ""]
        if self.not_trained:
            lines += [f"{len(self.not_trained)} of {len(self.per_task)} tasks were not trained on by this checkpoint "
                      f"(marked below); they are run and counted like the others.", ""]
        if self.deviations:
            lines += ["Where this run differs from LeRobot's protocol:", ""]
            lines += [f"- {deviation}" for deviation in self.deviations] + [""]
        lines += ["| task | group | success | 95% CI | mean steps to success | trained on |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for task, r in self.per_task.items():
            steps = f"{r.mean_steps_to_success:.1f}" if r.mean_steps_to_success is not None else "-"
            lines.append(f"| {task} | {GROUP_OF[task]} | {r.successes}/{r.episodes} | {100 * r.ci95[0]:.0f}-"
                         f"{100 * r.ci95[1]:.0f}% | {steps} | {'yes' if task in self.trained else 'no'} |")
        return "\n".join(lines) + "\n"


def result_dict(result: EvalResult) -> dict:
    data = dict(result.__dict__)
    data["ci95"] = list(result.ci95)
    return data


def timing_label(eval_config: EvalConfig) -> str:
    if eval_config.latency <= 0:
        return "classic"
    return (f"timed: latency {eval_config.latency * 1e3:g} ms, {eval_config.step_rate:g} Hz, "
            f"seam {eval_config.seam}")


def protocol_deviations(checkpoint_env: dict, eval_config: EvalConfig, env_base: EnvConfig) -> list[str]:
    """Where a suite's run differs from LeRobot's Meta-World protocol (envs/metaworld_suites.py PROTOCOL), each in
    words; empty when it follows it."""
    found = []
    if checkpoint_env["observation"] != PROTOCOL["observation"]:
        found.append(f"state: {observation_label(checkpoint_env['observation'])}, not agent_pos (the first 4 "
                     f"numbers: hand position and gripper)")
    position = [round(float(x), 6) for x in checkpoint_env["camera_position"]]
    if checkpoint_env["camera"] != PROTOCOL["camera"] or position != PROTOCOL["camera_position"]:
        where = f"at {tuple(position)}" if position else "at the scene's own placement"
        found.append(f"camera: {checkpoint_env['camera']} {where}, not corner2 at (0.75, 0.075, 0.7)")
    if checkpoint_env["extra_cameras"]:
        found.append(f"more cameras: {', '.join(checkpoint_env['extra_cameras'])} besides the scene camera "
                     f"(corner2 alone)")
    if env_base.max_episode_steps != PROTOCOL["max_episode_steps"]:
        found.append(f"episodes end after {env_base.max_episode_steps} steps, not 500")
    if eval_config.episodes < PROTOCOL["episodes"]:
        found.append(f"{eval_config.episodes} episode{'s' if eval_config.episodes > 1 else ''} per task, not 10")
    if eval_config.instruction or eval_config.instructions != "lerobot":
        given = f"the instruction {eval_config.instruction!r}" if eval_config.instruction else (
            f"eval.instructions {eval_config.instructions}")
        found.append(f"{given}, not LeRobot's description of the task (eval.instructions lerobot)")
    if eval_config.image_ablation != "none":
        found.append(f"images replaced ({eval_config.image_ablation})")
    if eval_config.latency > 0:
        found.append(f"{timing_label(eval_config)}, not one chunk sampled at once")
    return found


@dataclass
class TaskJob:
    """One task's evaluation, as a worker process receives it (eval.workers)."""

    eval_config: EvalConfig
    env_base: EnvConfig
    task: str
    instructions: list[str]
    progress: bool


def evaluate_job(job: TaskJob):
    """A worker's part (workers.py): the task's EvalResult, with the worker's own copy of the policy."""
    if job.eval_config.threads > 0:
        torch.set_num_threads(job.eval_config.threads)
    policy, payload = load_policy(job.eval_config.checkpoint)
    yield evaluate_task(policy, payload, job.task, job.eval_config, job.env_base, job.instructions,
                        job.eval_config.inference_steps or None, job.eval_config.n_action_steps or None, job.progress)


def evaluate(eval_config: EvalConfig, env_base: EnvConfig, progress: bool = True,
             view: PolicyView | None = None) -> MultiEvalResult:
    """Closed-loop evaluation of eval.checkpoint on each of eval.tasks (empty: the checkpoint's own) or of the
    tasks of eval.suite, with eval.instruction for every episode or else those of eval.instructions. The sampler
    settings (eval.inference_steps, eval.n_action_steps) default to the checkpoint's. The episodes are shown in
    `view`, else in a recording this call writes to eval.view_save, if set (view.py)."""
    eval_config.validate()  # sections built in Python, not read by Config.from_dict, reach here unchecked
    env_base.validate()
    if eval_config.threads > 0:
        torch.set_num_threads(eval_config.threads)
    payload = read_checkpoint(eval_config.checkpoint)  # (the policy itself: where it runs, below or in workers)
    check_observation_matches(payload, env_base.observation, eval_config.checkpoint, "env.observation")
    trained = payload["env"].get("tasks") or [payload["env"]["task"]]
    tasks = suite_tasks(eval_config.suite) if eval_config.suite else (eval_config.tasks or trained)
    for name in tasks:
        check_sim_task(name)
    jobs = [TaskJob(eval_config, env_base, name, [eval_config.instruction] if eval_config.instruction
                    else eval_instructions(name, eval_config.instructions, trained), progress) for name in tasks]
    if eval_config.workers > 1 and len(jobs) > 1:  # whole tasks in worker processes, gathered in the tasks' order
        done = {jobs[number].task: result for number, result in run_in_workers(evaluate_job, jobs, eval_config.workers)}
        per_task = {name: done[name] for name in tasks}
    else:
        policy = policy_from_payload(payload, eval_config.checkpoint)
        own_view = view is None
        view = view or PolicyView(save=eval_config.view_save)  # (eval.view: the command serves a viewer)
        try:
            per_task = {job.task: evaluate_task(policy, payload, job.task, eval_config, env_base, job.instructions,
                                                eval_config.inference_steps or None,
                                                eval_config.n_action_steps or None, progress, view) for job in jobs}
        finally:
            if own_view:
                view.close()
    mode = "given" if eval_config.instruction else eval_config.instructions
    deviations = protocol_deviations(payload["env"], eval_config, env_base) if eval_config.suite else []
    return MultiEvalResult(str(eval_config.checkpoint), mode, per_task, eval_config.seed, eval_config.suite,
                           list(trained), deviations)


def write_json(result: MultiEvalResult, path: str | Path) -> list[Path]:
    """The results as JSON at `path`; a suite's also as markdown beside it (the same name, .md). Returns the files
    written."""
    path = Path(path)
    page = path.with_suffix(".md")
    if result.suite and page == path:
        raise ConfigError(f"eval.json {path} ends in .md, where a suite writes its markdown table: name it .json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    if not result.suite:
        return [path]
    page.write_text(result.markdown())
    return [path, page]
