"""Benchmark of one language-conditioned policy for many tasks.

    .venv/bin/python bench/bench_multitask.py --checkpoint checkpoints/multitask.pt \
        [--compare runs/multitask-concat/best.pt] [--single push-v3=checkpoints/push_v3.pt ...]

For each checkpoint, every task it was trained on is evaluated closed-loop on unseen layouts
(seed 1000) twice: with held-out paraphrases of its own instruction, and with another task's
instruction (does the language matter?). Single-task checkpoints, when given, are evaluated on
their task with its plain instruction. Prints one table, writes bench/results/multitask.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, write_results  # noqa: E402
from minivla_core.checkpoint import read_checkpoint  # noqa: E402
from minivla_core.config import EnvConfig, EvalConfig  # noqa: E402
from minivla_core.evaluate import evaluate  # noqa: E402


def rate(result) -> str:
    return f"{result.successes}/{result.episodes} = {100 * result.success_rate:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, help="multi-task checkpoint(s)")
    parser.add_argument("--single", action="append", default=[], help="TASK=CHECKPOINT, a single-task policy")
    parser.add_argument("--episodes", type=int, default=30, help="per task, held-out paraphrases")
    parser.add_argument("--other-episodes", type=int, default=10,
                        help="per task, with another task's instruction (failures run to the step limit: costly)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "multitask"))
    args = parser.parse_args()

    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
               "episodes_per_task": args.episodes, "other_episodes_per_task": args.other_episodes,
               "multi": {}, "single": {}}
    for checkpoint in args.checkpoint:
        payload = read_checkpoint(checkpoint)
        entry = {"info": {k: payload["info"].get(k) for k in ("epoch", "seconds", "train_episodes", "train_samples")},
                 "model": {k: payload["model_config"][k] for k in ("text_film", "d_model")}}
        for mode, episodes in (("held_out", args.episodes), ("other_task", args.other_episodes)):
            result = evaluate(EvalConfig(checkpoint=checkpoint, episodes=episodes, instructions=mode), EnvConfig())
            entry[mode] = result.to_dict()
            print(result.summary(), flush=True)
        results["multi"][checkpoint] = entry
    for item in args.single:
        task, checkpoint = item.split("=", 1)
        result = evaluate(EvalConfig(checkpoint=checkpoint, episodes=args.episodes, tasks=[task]), EnvConfig())
        results["single"][task] = {"checkpoint": checkpoint, **result.to_dict()}

    write_results(results, render_table(results), args.out)


def render_table(r: dict) -> str:
    lines = [f"# One policy, many tasks, {r['date']}", "", f"Machine: {r['machine']}  ", f"Commit: {r['commit']}",
             f"Episodes per task: {r['episodes_per_task']} with held-out paraphrases, {r['other_episodes_per_task']} "
             f"with another task's instruction; unseen layouts (seed 1000)", ""]
    for checkpoint, entry in r["multi"].items():
        info, model = entry["info"], entry["model"]
        minutes = f"{info['seconds'] / 60:.1f} min" if info.get("seconds") else "?"
        lines += [f"## {checkpoint}", "",
                  f"text FiLM: {model['text_film']}; trained {info.get('epoch')} epochs on {info.get('train_episodes')} "
                  f"episodes ({info.get('train_samples')} steps) in {minutes}", "",
                  "| task | held-out paraphrase | 95% CI | mean steps | another task's instruction | single-task policy |",
                  "| --- | --- | --- | --- | --- | --- |"]
        held, other = entry["held_out"]["per_task"], entry["other_task"]["per_task"]
        for task, result in held.items():
            single = r["single"].get(task)
            single_text = f"{single['successes']}/{single['episodes']} = {100 * single['success_rate']:.0f}%" if single else "-"
            steps = f"{result['mean_steps_to_success']:.0f}" if result["mean_steps_to_success"] else "-"
            wrong = other[task]
            lines.append(f"| {task} | {result['successes']}/{result['episodes']} = {100 * result['success_rate']:.0f}% "
                         f"| {100 * result['ci95'][0]:.0f}-{100 * result['ci95'][1]:.0f}% | {steps} "
                         f"| {wrong['successes']}/{wrong['episodes']} = {100 * wrong['success_rate']:.0f}% "
                         f"(\"{wrong['per_episode'][0]['instruction']}\") | {single_text} |")
        lines += [f"| **average** | **{100 * entry['held_out']['success_rate']:.1f}%** | | "
                  f"| {100 * entry['other_task']['success_rate']:.1f}% | |", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
