"""Benchmark of minivla_core on this machine: collection time, training time, success rate on
unseen layouts with the real camera image and under each image ablation (does it look?), and
policy latency on one CPU thread. Prints one table and writes bench/results/core.{md,json} with
the date, the commit and the machine.

    .venv/bin/python bench/bench_core.py --keep checkpoints/push_v3.pt   # everything (~35 min on 2 cores)
    .venv/bin/python bench/bench_core.py --checkpoint checkpoints/push_v3.pt   # eval + latency only

The recipe is exactly the CLI's defaults: `minivla collect --episodes 100`, `minivla train`,
`minivla eval --episodes 50` (seed 1000, layouts never seen in collection), proprio state. Seed 1000 is a
validation seed (minivla_core/config.py SEED_ROLES): those layouts chose the recipe, so its success rates are
validation figures; `--seed 2000` (a test seed) gives the figures to report. The table says which.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minivla_core.checkpoint import load_policy, read_checkpoint  # noqa: E402
from minivla_core.config import (  # noqa: E402
    VALIDATION_SEED, CollectConfig, Config, EnvConfig, EvalConfig, figure_label)
from minivla_core.data.collect import collect  # noqa: E402
from minivla_core.envs.metaworld_env import MetaWorldEnv  # noqa: E402
from minivla_core.evaluate import IMAGE_ABLATIONS, env_config_for, evaluate  # noqa: E402
from minivla_core.model.policy import PolicyRunner  # noqa: E402
from minivla_core.train import train  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.platform()}, torch {torch.__version__}"


def measure_latency(checkpoint: Path, repeats: int = 50) -> list[dict]:
    """p50/p90 of one full sampling call and per executed action, at several DDIM step counts, 1 thread."""
    torch.set_num_threads(1)
    policy, payload = load_policy(checkpoint)
    env = MetaWorldEnv(env_config_for(payload["env"], EnvConfig(seed=VALIDATION_SEED)))  # one observation
    obs = env.reset(0)
    env.close()
    rows = []
    for steps in sorted({1, 5, 10, policy.config.diffusion_steps}):
        runner = PolicyRunner(policy, env.instruction, inference_steps=steps)
        for _ in range(5):
            runner.sample_chunk(obs.images, obs.state)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            runner.sample_chunk(obs.images, obs.state)
            times.append(time.perf_counter() - start)
        p50, p90 = np.percentile(times, 50) * 1e3, np.percentile(times, 90) * 1e3
        rows.append({"inference_steps": steps, "call_p50_ms": p50, "call_p90_ms": p90,
                     "per_action_p50_ms": p50 / runner.n_action_steps, "n_action_steps": runner.n_action_steps})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100, help="demos to collect")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help="layouts of the evaluation: 1000 a validation seed, 2000 and up test seeds")
    parser.add_argument("--work", help="folder for the dataset and run (default: a temp dir)")
    parser.add_argument("--checkpoint", help="skip collection and training; evaluate this checkpoint")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--keep", help="copy the trained best.pt here")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "core"))
    args = parser.parse_args()

    results: dict = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit()}
    work = Path(args.work or tempfile.mkdtemp(prefix="minivla-bench-"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is None:
        config = Config()
        dataset = work / "data" / "push-v3"
        shutil.rmtree(dataset, ignore_errors=True)
        start = time.perf_counter()
        collected = collect(config.env, CollectConfig(out=str(dataset), episodes=args.episodes))
        results["collect"] = {"episodes": collected.kept, "dropped": collected.dropped, "steps": collected.steps,
                              "seconds": time.perf_counter() - start,
                              "bytes": sum(f.stat().st_size for f in dataset.rglob("*") if f.is_file())}
        config.train.dataset, config.train.out_dir = str(dataset), str(work / "run")
        start = time.perf_counter()
        trained = train(config)
        results["train"] = {"seconds": time.perf_counter() - start, "epochs": config.train.epochs,
                            "best_val_loss": trained["best_val"],
                            "final_train_loss": trained["history"]["train_loss"][-1]}
        checkpoint = work / "run" / "best.pt"
        if args.keep:
            shutil.copy(checkpoint, args.keep)
    results["checkpoint"] = str(checkpoint)
    payload = read_checkpoint(checkpoint)
    if "train" not in results:  # a given checkpoint: its own record of how long training took
        info = payload["info"]
        if info.get("seconds"):
            results["train"] = {"seconds": info["seconds"], "epochs": info.get("epoch"),
                                "best_val_loss": info.get("val_loss"), "final_train_loss": info.get("train_loss"),
                                "from_checkpoint": True}
    if not args.skip_eval:
        observation = payload["env"]["observation"]
        results["eval"] = {}
        results["seed"], results["role"] = args.seed, figure_label(args.seed)
        for ablation in IMAGE_ABLATIONS:
            result = evaluate(EvalConfig(checkpoint=str(checkpoint), episodes=args.eval_episodes,
                                         image_ablation=ablation, seed=args.seed),
                              EnvConfig(observation=observation)).only
            results["eval"][ablation] = {k: v for k, v in result.__dict__.items() if k != "per_episode"}
            print(result.summary(), flush=True)
    results["latency"] = measure_latency(checkpoint)

    write_results(results, render_table(results), args.out)


def write_results(results: dict, table: str, out: str | Path) -> None:
    """Print the table; write it to OUT.md and the raw results to OUT.json."""
    print(table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=list) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    print(f"written: {out.with_suffix('.md')} and .json")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "unknown"


def role_line(seed: int) -> str:
    """The line every results page with success rates carries: the role of the layouts' seed."""
    return f"Role of the success rates: {figure_label(seed)}."


def render_table(results: dict) -> str:
    lines = [f"# minivla_core benchmark, {results['date']}", "", f"Machine: {results['machine']}  ",
             f"Commit: {results['commit']}, checkpoint: {results['checkpoint']}  ",
             role_line(results.get("seed", VALIDATION_SEED)), "",  # results before the roles: seed 1000
             "| measure | value |", "| --- | --- |"]
    if "collect" in results:
        c = results["collect"]
        lines.append(f"| collect {c['episodes']} push-v3 demos ({c['dropped']} dropped, {c['steps']} steps) "
                     f"| {c['seconds']:.1f} s, {c['bytes'] / 1e6:.1f} MB on disk |")
    if "train" in results:
        t = results["train"]
        if t.get("from_checkpoint"):
            lines.append(f"| train, up to the best epoch ({t['epochs']}; val loss {t['best_val_loss']:.4f}; "
                         f"as recorded in the checkpoint) | {t['seconds'] / 60:.1f} min |")
        else:
            lines.append(f"| train ({t['epochs']} epochs, best val loss {t['best_val_loss']:.4f}) | "
                         f"{t['seconds'] / 60:.1f} min |")
    seen_as = {"none": "the real camera image", "black": "a black image", "frozen": "the episode's first image, frozen",
               "shuffled": "another layout's images (expert playing it)"}
    for ablation, e in results.get("eval", {}).items():
        steps = f"{e['mean_steps_to_success']:.1f}" if e["mean_steps_to_success"] else "-"
        lines.append(f"| success on unseen layouts, policy sees {seen_as[ablation]} ({e['observation']} state, seed "
                     f"{e['seed']}, {e['inference_steps']} DDIM steps, {e['n_action_steps']} actions per chunk) | "
                     f"{e['successes']}/{e['episodes']} = {100 * e['success_rate']:.0f}% (95% CI "
                     f"{100 * e['ci95'][0]:.0f}-{100 * e['ci95'][1]:.0f}%), mean steps to success {steps} |")
    lines += ["", "Policy latency, 1 CPU thread (one sampling call = one chunk):", "",
              "| DDIM steps | call p50 (ms) | call p90 (ms) | per executed action p50 (ms) |",
              "| --- | --- | --- | --- |"]
    for row in results["latency"]:
        lines.append(f"| {row['inference_steps']} | {row['call_p50_ms']:.2f} | {row['call_p90_ms']:.2f} | "
                     f"{row['per_action_p50_ms']:.2f} (chunk of {row['n_action_steps']}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
