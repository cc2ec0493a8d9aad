"""Benchmark: policies driving robots through standard ROS 2 messages only, against offline `minivla eval` on
the same layouts.

    .venv/bin/python bench/bench_robot.py --episodes 50               # bench/results/robot.{md,json}
    .venv/bin/python bench/bench_robot.py --timing free --runs 4      # each node on its own clock

Each robot is a minivla config file's sections, as docs/robot.md uses them:
- Fetch pushing a block (config/fetch.yaml, checkpoint checkpoints/fetch_push.pt, trained on bags recorded
  through ROS): the bridge speaks standard messages only (bridge.interface standard).
- Meta-World push-v3 (checkpoints/push_v3.pt) with the same standard interface: PoseStamped and the JointState
  `gripper` joint in, TwistStamped and a Float64 gripper command out, episode starts as std_msgs/Header.
Each run is `minivla run` (bridge and policy node as two processes over DDS on loopback) for N episodes on the
evaluation layouts (env.seed 1000, a validation seed, unless --seed; never seen in collection), then the same N
layouts offline on 1 thread. The table says the role of its figures (validation or test).
In lockstep timing (`minivla run`'s default) a run plays each episode as offline eval does: one run is enough,
and the table counts the episodes whose outcome and step count match offline. In free timing the nodes' timers
start with a random phase and runs differ (issue 13), hence several runs and the spread.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, role_line, write_results  # noqa: E402
from minivla_core.config import (  # noqa: E402
    VALIDATION_SEED, EnvConfig, EvalConfig, load_config, read_config_file)
from minivla_core.envs import sim_instruction  # noqa: E402
from minivla_core.evaluate import evaluate, wilson_interval  # noqa: E402
from minivla_ros import bringup  # noqa: E402

STANDARD_METAWORLD = {"bridge.interface": "standard", "robot.state_type": "PoseAndJoints",
                      "robot.action_type": "TwistStamped", "robot.episode_topic": "episode"}


def robots(fetch_checkpoint: str, push_checkpoint: str) -> dict:
    fetch = load_config(ROOT / "config" / "fetch.yaml")
    # Only what the file sets, as `minivla run --config` passes it: the file's defaults (env.seed 0, the collection
    # layouts) must not replace the parameter file's evaluation layouts (seed 1000). An earlier version passed
    # every field, so its Fetch runs through ROS were on collection layouts.
    given = read_config_file(ROOT / "config" / "fetch.yaml")
    fetch_overrides = {f"{section}.{name}": value for section in ("env", "bridge", "robot")
                       for name, value in given.get(section, {}).items()}
    return {"fetch-push": (fetch_checkpoint, fetch_overrides, fetch.env.max_episode_steps),
            "push-v3": (push_checkpoint, STANDARD_METAWORLD, EnvConfig().max_episode_steps)}


def measure(task: str, checkpoint: str, overrides: dict, max_steps: int, runs: int, episodes: int,
            timing: str, seed: int) -> dict:
    offline = evaluate(EvalConfig(checkpoint=checkpoint, episodes=episodes, seed=seed, threads=1),
                       EnvConfig(max_episode_steps=max_steps), progress=False).per_task[task]
    graph_runs = []
    for run in range(runs):
        result = bringup.run(episodes, task, sim_instruction(task),
                             overrides={**overrides, "policy_node.checkpoint": checkpoint, "bridge.timing": timing,
                                        "policy_node.timing": timing, "env.seed": seed})
        same = sum((a["success"], a["steps"]) == (b["success"], b["steps"])
                   for a, b in zip(result.episodes, offline.per_episode))
        graph_runs.append({"successes": result.successes, "episodes": len(result.episodes),
                           "same_outcome_and_steps": same, "per_episode": result.episodes,
                           "policy_status": result.policy_status})
        print(f"{task} run {run + 1}: {result.successes}/{len(result.episodes)} through ROS, {same} episodes as "
              f"offline", flush=True)
    successes = sum(r["successes"] for r in graph_runs)
    total = sum(r["episodes"] for r in graph_runs)
    return {"checkpoint": checkpoint, "overrides": overrides, "timing": timing, "runs": graph_runs,
            "graph": {"successes": successes, "episodes": total, "ci95": wilson_interval(successes, total)},
            "offline": {"successes": offline.successes, "episodes": offline.episodes, "ci95": offline.ci95}}


def render_table(results: dict) -> str:
    lines = [f"# Robots through standard ROS 2 messages, {results['date']}", "",
             f"Machine: {results['machine']}  ", f"Commit: {results['commit']}  ",
             role_line(results.get("seed", VALIDATION_SEED)), "",
             "Protocol: proprio state (hand position + gripper opening), one fixed camera, evaluation layouts "
             f"(env.seed {results.get('seed', VALIDATION_SEED)}, never seen in collection); through ROS = `minivla "
             "run` with only standard messages between the robot (sim_bridge, bridge.interface standard) and the "
             "policy node; offline = `minivla eval` on the same layouts.", "",
             "| robot | checkpoint | timing | through ROS, each run (episodes as offline: outcome and steps) | "
             "through ROS, all (95% CI) | offline (95% CI) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for task, r in results["robots"].items():
        each = ", ".join(f"{run['successes']}/{run['episodes']} ({run['same_outcome_and_steps']})" for run in r["runs"])
        g, o = r["graph"], r["offline"]
        lines.append(f"| {task} | `{r['checkpoint']}` | {r['timing']} | {each} | {g['successes']}/{g['episodes']} = "
                     f"{g['successes'] / g['episodes']:.0%} ({g['ci95'][0]:.0%}-{g['ci95'][1]:.0%}) | "
                     f"{o['successes']}/{o['episodes']} = {o['successes'] / o['episodes']:.0%} "
                     f"({o['ci95'][0]:.0%}-{o['ci95'][1]:.0%}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="graph runs per robot")
    parser.add_argument("--timing", choices=("lockstep", "free"), default="lockstep", help="both nodes' timing")
    parser.add_argument("--episodes", type=int, default=50, help="episodes per run (and offline)")
    parser.add_argument("--robots", nargs="+", default=["fetch-push", "push-v3"])
    parser.add_argument("--fetch-checkpoint", default="checkpoints/fetch_push.pt")
    parser.add_argument("--push-checkpoint", default="checkpoints/push_v3.pt")
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help="layouts, offline and through ROS: 1000 a validation seed, 2000 and up test seeds")
    parser.add_argument("--commit", default="", help="the commit measured (default: git's HEAD)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "robot"))
    args = parser.parse_args()
    chosen = {task: spec for task, spec in robots(args.fetch_checkpoint, args.push_checkpoint).items()
              if task in args.robots}
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": args.commit or git_commit(),
               "machine": machine(), "runs": args.runs, "episodes": args.episodes, "seed": args.seed,
               "robots": {task: measure(task, *spec, args.runs, args.episodes, args.timing, args.seed)
                          for task, spec in chosen.items()}}
    write_results(results, render_table(results), args.out)


if __name__ == "__main__":
    main()
