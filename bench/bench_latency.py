"""Benchmark of timed execution against inference latency, without ROS: `minivla eval --latency` (minivla_core/timed.py,
run_timed_episode) on the same unseen layouts as the classic loop, for several sampling latencies, seam rules and
numbers of executed actions per chunk.

    .venv/bin/python bench/bench_latency.py                # latencies 30-315 ms, both seams, 4 noise seeds (~1 h)
    .venv/bin/python bench/bench_latency.py --latencies 0.115 --seams inpaint replace --episodes 20

The clock is simulated and every sampling call takes exactly the latency given, so each figure is deterministic:
it is what the ROS graph's timed mode would score if its latency never varied. Latency here is the whole time
from an observation to its chunk's arrival at the robot (the graph's latency column, transport included). Reference
points: the graph on a quiet machine measures 21-34 ms (p50, offsets 0 and 12.5 ms), under two busy CPU loops
37-78 ms, with +100 ms injected about 145 ms, with +300 ms about 350 ms (bench/results/graph.md).

Each row: success and its 95% interval, points from the classic loop, the episodes whose outcome (and step count)
match the classic loop's, and the executor's counts (held steps, late actions, the largest jump at a seam).
Writes bench/results/latency.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, role_line, write_results  # noqa: E402
from minivla_core.config import VALIDATION_SEED, EnvConfig, EvalConfig  # noqa: E402
from minivla_core.evaluate import evaluate, wilson_interval  # noqa: E402


def run_once(job: tuple) -> dict:
    """One setting on the layouts with one noise seed: (success, steps) and the executor's counts per episode."""
    checkpoint, episodes, latency, seam, n_action_steps, noise_seed, seed = job
    config = EvalConfig(checkpoint=checkpoint, episodes=episodes, latency=latency, seam=seam,
                        n_action_steps=n_action_steps, noise_seed=noise_seed, seed=seed)
    result = evaluate(config, EnvConfig(), progress=False).only
    return {"n_action_steps": result.n_action_steps,
            "per_episode": [(e["success"], e["steps"]) for e in result.per_episode],
            "executor": [e.get("executor", {}) for e in result.per_episode]}


def pooled(setting: tuple, noise_seeds: list[int], parts: list[dict]) -> dict:
    """One setting's runs (one per noise seed) as one row."""
    latency, seam, _ = setting
    per_episode = [episode for part in parts for episode in part["per_episode"]]
    executor = [counts for part in parts for counts in part["executor"]]
    total = {key: sum(counts.get(key, 0) for counts in executor) for key in ("held", "late", "expired")}
    total["max_seam_jump"] = max((counts.get("max_seam_jump", 0.0) for counts in executor), default=0.0)
    successes = sum(success for success, _ in per_episode)
    return {"latency": latency, "seam": seam, "n_action_steps": parts[0]["n_action_steps"], "noise_seeds": noise_seeds,
            "successes": successes, "episodes": len(per_episode),
            "ci95": list(wilson_interval(successes, len(per_episode))), "per_episode": per_episode, **total}


def render(results: dict) -> str:
    seed = results.get("seed", VALIDATION_SEED)  # results from before the seed roles: seed 1000
    lines = [f"# Timed execution against latency (simulated clock), {results['date']}", "",
             f"Machine: {results['machine']}  ", f"Commit: {results['commit']}, checkpoint: {results['checkpoint']}, "
             f"layouts: seed {seed}, episodes 0-{results['episodes'] - 1} (never seen in training), each once per "
             f"sampler noise seed {results['classic']['noise_seeds']}; proprio state; 20 Hz; 95% Wilson intervals  ",
             role_line(seed), ""]
    classic = results["classic"]
    low, high = classic["ci95"]
    rate = 100 * classic["successes"] / classic["episodes"]
    lines.append(f"Classic loop (`minivla eval`, n_action_steps {classic['n_action_steps']}): "
                 f"{classic['successes']}/{classic['episodes']} = {rate:.1f}% "
                 f"({100 * low:.0f}-{100 * high:.0f}%).")
    lines += ["", "| latency | seam | actions per chunk | success | points from classic | same outcome | same outcome "
              "and steps | held steps | late actions | largest jump at a seam |", "| --- " * 10 + "|"]
    base = classic["per_episode"]
    for row in results["runs"]:
        low, high = row["ci95"]
        same = sum(a[0] == b[0] for a, b in zip(row["per_episode"], base))
        exact = sum(a == b for a, b in zip(row["per_episode"], base))
        points = 100 * (row["successes"] - classic["successes"]) / row["episodes"]
        lines.append(f"| {row['latency'] * 1e3:g} ms | {row['seam']} | {row['n_action_steps']} | "
                     f"{row['successes']}/{row['episodes']} = {100 * row['successes'] / row['episodes']:.1f}% "
                     f"({100 * low:.0f}-{100 * high:.0f}%) | {points:+.1f} | {same}/{row['episodes']} | "
                     f"{exact}/{row['episodes']} | {row['held']} | {row['late']} | {row['max_seam_jump']:.2f} |")
    lines += ["", "Latency: from the observation to its chunk's arrival, every call the same. Held: steps with no "
              "action due (the arm still). Late: actions whose step came before their chunk (the chunk before ran "
              "them: by design). Jump: the largest change of a motion action (1 = full speed) between two steps "
              "from different chunks. Actions per chunk: n_action_steps, executed before the next chunk takes over."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "push_v3.pt"))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help="layouts: 1000 a validation seed, 2000 and up test seeds")
    parser.add_argument("--latencies", type=float, nargs="*", default=[0.03, 0.06, 0.09, 0.115, 0.145, 0.18, 0.315],
                        help="seconds from observation to chunk")
    parser.add_argument("--seams", nargs="*", default=["inpaint", "replace"])
    parser.add_argument("--n-action-steps", type=int, nargs="*", default=[0], help="0: the checkpoint's")
    parser.add_argument("--noise-seeds", type=int, nargs="*", default=[0, 1, 2, 3],
                        help="each setting runs the layouts once per sampler noise seed")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="evaluations run in parallel")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latency"))
    args = parser.parse_args()

    settings = [(0.0, "inpaint", 0)]  # the classic loop first
    settings += [(latency, seam, n) for n in args.n_action_steps for latency in args.latencies for seam in args.seams]
    jobs = [(args.checkpoint, args.episodes, latency, seam, n, noise_seed, args.seed) for latency, seam, n in settings
            for noise_seed in args.noise_seeds]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:  # each eval on one thread, in parallel
        parts = pool.map(run_once, jobs)
    k = len(args.noise_seeds)
    rows = [pooled(setting, args.noise_seeds, parts[i * k:(i + 1) * k]) for i, setting in enumerate(settings)]
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
               "machine": machine(), "checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed,
               "classic": rows[0], "runs": rows[1:]}
    write_results(results, render(results), args.out)


if __name__ == "__main__":
    main()
