"""Benchmark of one language-conditioned policy for many tasks.

    .venv/bin/python bench/bench_multitask.py --checkpoint checkpoints/multitask.pt \
        [--checkpoint runs/another/best.pt ...] [--single push-v3=checkpoints/push_v3.pt ...]

For each checkpoint, every task it was trained on is evaluated closed-loop on unseen layouts
(`--seed`: 1000, a validation seed, unless told; the table says the role of its figures) three
times: with held-out paraphrases of its own instruction, with another task's instruction (does
the language matter?), and with held-out paraphrases over a black image (does it look?). Success
alone cannot show language being ignored where a scene allows one task only, so the policy's
actions are also compared open-loop on the expert's own observations (unseen layouts): how far
from the expert's action they are with the right instruction, how far a rewording (the two
held-out paraphrases) moves them, and how far another task's instruction moves them, all with the
same diffusion noise. Single-task checkpoints, when given, are evaluated on their task with its
plain instruction. Prints one table, writes bench/results/multitask.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.bench_core import git_commit, machine, role_line, write_results  # noqa: E402
from minivla_core.checkpoint import load_policy, read_checkpoint  # noqa: E402
from minivla_core.config import VALIDATION_SEED, EnvConfig, EvalConfig, observation_label  # noqa: E402
from minivla_core.data.collect import run_expert_episode  # noqa: E402
from minivla_core.envs.metaworld_env import MetaWorldEnv, make_expert, paraphrases  # noqa: E402
from minivla_core.evaluate import env_config_for, evaluate, eval_instructions  # noqa: E402
from minivla_core.model.policy import image_to_tensor  # noqa: E402


def rate(result: dict) -> str:
    return f"{result['successes']}/{result['episodes']} = {100 * result['success_rate']:.0f}%"


def first_actions(policy, images, states, instruction: str, seed: int = 0) -> np.ndarray:
    """The first action of the chunk sampled for each observation, with noise fixed by `seed`."""
    tokens, lengths, _ = policy.tokenize([instruction])
    batch = len(states)
    chunks = policy.predict_action_chunk(image_to_tensor(images), torch.from_numpy(states),
                                         tokens.expand(batch, -1), lengths.expand(batch),
                                         generator=torch.Generator().manual_seed(seed))
    return chunks[:, 0].numpy()


def language_effect(checkpoint: str, episodes: int, seed: int) -> dict:
    """Per task, mean L2 distances between first actions (open loop, on expert observations)."""
    policy, payload = load_policy(checkpoint)
    trained = payload["env"].get("tasks") or [payload["env"]["task"]]
    effect = {}
    for task in trained:
        env_config = env_config_for(payload["env"], EnvConfig(), task)
        env_config.seed = seed  # the evaluation layouts
        images, states, expert_actions = [], [], []
        with MetaWorldEnv(env_config) as env:
            expert = make_expert(task)
            for episode in range(episodes):
                episode_images, episode_states, episode_actions, _ = run_expert_episode(env, expert, episode)
                images += episode_images
                states += episode_states
                expert_actions += episode_actions
        images, states, expert_actions = np.stack(images), np.stack(states), np.stack(expert_actions)
        right, reworded = (paraphrases(task, held_out=True) * 2)[:2]
        wrong = eval_instructions(task, "other_task", trained)[0]
        actions = {name: first_actions(policy, images, states, text)
                   for name, text in (("right", right), ("reworded", reworded), ("wrong", wrong))}
        distance = lambda a, b: float(np.linalg.norm(a - b, axis=1).mean())  # noqa: E731
        effect[task] = {"observations": len(states), "right": right, "reworded": reworded, "wrong": wrong,
                        "right_vs_expert": distance(actions["right"], expert_actions),
                        "wrong_vs_expert": distance(actions["wrong"], expert_actions),
                        "rewording_shift": distance(actions["right"], actions["reworded"]),
                        "wrong_task_shift": distance(actions["right"], actions["wrong"])}
        print(f"{task}: {effect[task]}", flush=True)
    return effect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, help="multi-task checkpoint(s)")
    parser.add_argument("--single", action="append", default=[], help="TASK=CHECKPOINT, a single-task policy")
    parser.add_argument("--episodes", type=int, default=30, help="per task, held-out paraphrases")
    parser.add_argument("--other-episodes", type=int, default=10,
                        help="per task, with another task's instruction (failures run to the step limit: costly)")
    parser.add_argument("--black-episodes", type=int, default=10, help="per task, with a black image (costly too)")
    parser.add_argument("--effect-episodes", type=int, default=5,
                        help="per task, expert episodes whose observations the open-loop action comparison uses")
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help="layouts: 1000 a validation seed, 2000 and up test seeds")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "multitask"))
    args = parser.parse_args()

    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
               "episodes_per_task": args.episodes, "other_episodes_per_task": args.other_episodes,
               "black_episodes_per_task": args.black_episodes, "seed": args.seed,
               "multi": {}, "single": {}}
    for checkpoint in args.checkpoint:
        payload = read_checkpoint(checkpoint)
        observation = payload["env"]["observation"]  # read_checkpoint fills it in for older checkpoints
        entry = {"info": {k: payload["info"].get(k) for k in ("epoch", "seconds", "train_episodes", "train_samples")},
                 "model": {k: payload["model_config"].get(k) for k in ("text_film", "d_model", "image_encoder")},
                 "observation": observation_label(observation),
                 "cameras": [payload["env"]["camera"], *payload["env"]["extra_cameras"]],
                 "image_size": payload["env"]["image_size"]}
        for mode, instructions, episodes, images in (("held_out", "held_out", args.episodes, "none"),
                                                     ("other_task", "other_task", args.other_episodes, "none"),
                                                     ("black", "held_out", args.black_episodes, "black")):
            result = evaluate(EvalConfig(checkpoint=checkpoint, episodes=episodes, instructions=instructions,
                                         image_ablation=images, seed=args.seed), EnvConfig(observation=observation))
            entry[mode] = result.to_dict()
            print(result.summary(), flush=True)
        entry["language_effect"] = language_effect(checkpoint, args.effect_episodes, args.seed)
        results["multi"][checkpoint] = entry
    for item in args.single:
        task, checkpoint = item.split("=", 1)
        observation = read_checkpoint(checkpoint)["env"]["observation"]
        result = evaluate(EvalConfig(checkpoint=checkpoint, episodes=args.episodes, tasks=[task], seed=args.seed),
                          EnvConfig(observation=observation))
        results["single"][task] = {"checkpoint": checkpoint, **result.to_dict()}

    write_results(results, render_table(results), args.out)


def render_table(r: dict) -> str:
    seed = r.get("seed", VALIDATION_SEED)  # results from before the seed roles: seed 1000
    lines = [f"# One policy, many tasks, {r['date']}", "", f"Machine: {r['machine']}  ", f"Commit: {r['commit']}",
             f"Episodes per task: {r['episodes_per_task']} with held-out paraphrases, "
             f"{r['other_episodes_per_task']} with another task's instruction, "
             f"{r.get('black_episodes_per_task', 0)} with a black image; unseen layouts (seed {seed})  ",
             role_line(seed), ""]
    for checkpoint, entry in r["multi"].items():
        info, model = entry["info"], entry["model"]
        minutes = f"{info['seconds'] / 60:.1f} min" if info.get("seconds") else "?"
        lines += [f"## {checkpoint}", "",
                  f"Observation: {entry.get('observation')} state and the "
                  f"{' and '.join(entry.get('cameras', ['camera']))} images ({entry.get('image_size', '?')} px); "
                  f"image encoder {model.get('image_encoder')}; text FiLM: {model['text_film']}; "
                  f"trained {info.get('epoch')} epochs on {info.get('train_episodes')} episodes "
                  f"({info.get('train_samples')} steps) in {minutes}", "",
                  "| task | held-out paraphrase | 95% CI | mean steps | another task's instruction | black image "
                  "| single-task policy |", "| --- | --- | --- | --- | --- | --- | --- |"]
        held, other = entry["held_out"]["per_task"], entry["other_task"]["per_task"]
        black = entry.get("black", {}).get("per_task", {})
        for task, result in held.items():
            single = r["single"].get(task)
            steps = f"{result['mean_steps_to_success']:.0f}" if result["mean_steps_to_success"] else "-"
            wrong = other[task]
            lines.append(f"| {task} | {rate(result)} | {100 * result['ci95'][0]:.0f}-{100 * result['ci95'][1]:.0f}% "
                         f"| {steps} | {rate(wrong)} (\"{wrong['per_episode'][0]['instruction']}\") "
                         f"| {rate(black[task]) if task in black else '-'} | {rate(single) if single else '-'} |")
        singles = [r["single"][task]["success_rate"] for task in held if task in r["single"]]
        single_average = f"{100 * sum(singles) / len(singles):.1f}% ({len(singles)} tasks)" if singles else ""
        black_average = f"{100 * entry['black']['success_rate']:.1f}%" if "black" in entry else ""
        lines += [f"| **average** | **{100 * entry['held_out']['success_rate']:.1f}%** | | "
                  f"| {100 * entry['other_task']['success_rate']:.1f}% | {black_average} | {single_average} |", ""]
        effect = entry.get("language_effect")
        if effect:
            lines += ["Does the instruction change the actions? First actions sampled on the expert's own observations "
                      "(unseen layouts), same noise; mean L2 distance, actions lie in [-1, 1]^4:", "",
                      "| task | observations | right instruction vs expert | another task's vs expert "
                      "| rewording shift | another task's shift |", "| --- | --- | --- | --- | --- | --- |"]
            for task, e in effect.items():
                lines.append(f"| {task} | {e['observations']} | {e['right_vs_expert']:.3f} | "
                             f"{e['wrong_vs_expert']:.3f} | {e['rewording_shift']:.3f} | "
                             f"{e['wrong_task_shift']:.3f} |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
