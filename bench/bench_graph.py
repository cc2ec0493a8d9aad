"""Benchmark of the ROS graph: closed-loop success through real nodes versus offline `minivla eval` on the same
layouts (seed 1000, episodes 0..N-1), in each timing of the graph.

    .venv/bin/python bench/bench_graph.py                      # lockstep + 2 free-running runs, 50 episodes each
    .venv/bin/python bench/bench_graph.py --free-runs 0 --busy 2   # lockstep only, with 2 busy CPU loops beside it

The graph runs as `minivla run` does (simulator bridge and policy node as two processes over DDS on loopback).
- lockstep (`minivla run`'s default): the bridge steps when the policy answers its newest observation. It must
  match offline eval in every episode, outcome and step count, whatever the machine's load.
- free: each node on its own 20 Hz timer, the newest command applied at each step (a robot's clock). Its
  figures depend on the timers' phase and the machine's load: several runs are reported, one by one.

This process also records every action command. In free timing its header stamp is the policy node's tick, so
consecutive stamps give the node's tick periods, and arrival time here minus observation_stamp (the camera
image the action's chunk was sampled from) is the observation-to-action latency, transport included.
`--busy K` starts K busy loops (a process each, spinning) for the graph runs, not for the offline eval.
Writes bench/results/graph.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, write_results  # noqa: E402
from minivla_core.config import EnvConfig, EvalConfig  # noqa: E402
from minivla_core.evaluate import evaluate, wilson_interval  # noqa: E402
from minivla_ros import bringup  # noqa: E402


def record_commands(stop: threading.Event, out: list) -> None:
    """Subscribe to action_command in a context of its own; append (header stamp, obs stamp, step_in_chunk,
    arrival time)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from minivla_ros import graph, qos
    from minivla_ros.msg import ActionCommand

    def seconds(t):
        return t.sec + t.nanosec * 1e-9

    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("bench_recorder", context=context)
    node.create_subscription(ActionCommand, graph.ACTION.name,
                             lambda m: out.append((seconds(m.header.stamp), seconds(m.observation_stamp),
                                                   m.step_in_chunk, node.get_clock().now().nanoseconds * 1e-9)),
                             qos.profile(graph.ACTION))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def spin_forever() -> None:
    while True:
        pass


def run_graph(timing: str, episodes: int, checkpoint: str) -> dict:
    """One `minivla run` of the graph in `timing`, with every action command recorded."""
    commands: list = []
    stop = threading.Event()
    recorder = threading.Thread(target=record_commands, args=(stop, commands))
    recorder.start()
    time.sleep(1.0)
    started = time.monotonic()
    try:
        result = bringup.run(episodes, "push-v3", "push the puck to the goal",
                             overrides={"policy_node.checkpoint": checkpoint, "bridge.timing": timing,
                                        "policy_node.timing": timing})
    finally:
        stop.set()
        recorder.join()
    run = {"timing": timing, "seconds": time.monotonic() - started, "successes": result.successes,
           "ci95": wilson_interval(result.successes, episodes), "per_episode": result.episodes,
           "steps": sum(e["steps"] for e in result.episodes), "commands": len(commands),
           "policy_status": result.policy_status}
    if timing == "free" and len(commands) > 1:
        stamps = np.array([c[0] for c in commands])
        periods = np.diff(stamps) * 1e3
        latency = (np.array([c[3] for c in commands]) - np.array([c[1] for c in commands])) * 1e3
        sampling = np.array([c[2] == 0 for c in commands])
        run["control"] = {"mean_period_ms": float(periods.mean()),
                          "p99_jitter_ms": float(np.percentile(np.abs(periods - 50.0), 99)),
                          "latency_p50_ms": float(np.percentile(latency, 50)),
                          "latency_p99_ms": float(np.percentile(latency, 99)),
                          "sampling_tick_latency_p50_ms": float(np.percentile(latency[sampling], 50)),
                          "sampling_tick_latency_p99_ms": float(np.percentile(latency[sampling], 99))}
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--free-runs", type=int, default=2, help="free-running runs after the lockstep one")
    parser.add_argument("--busy", type=int, default=0, help="busy CPU loops during the graph runs")
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "push_v3.pt"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "graph"))
    args = parser.parse_args()
    os.environ.update(bringup.ros_environment())

    offline = evaluate(EvalConfig(checkpoint=args.checkpoint, episodes=args.episodes, seed=1000, threads=1),
                       EnvConfig()).only
    busy = [multiprocessing.Process(target=spin_forever, daemon=True) for _ in range(args.busy)]
    for process in busy:
        process.start()
    try:
        runs = [run_graph("lockstep", args.episodes, args.checkpoint)]
        runs += [run_graph("free", args.episodes, args.checkpoint) for _ in range(args.free_runs)]
    finally:
        for process in busy:
            process.terminate()
    for run in runs:
        run["same_outcome"] = sum(a["success"] == b["success"] for a, b in zip(run["per_episode"], offline.per_episode))
        run["same_outcome_and_steps"] = sum((a["success"], a["steps"]) == (b["success"], b["steps"])
                                            for a, b in zip(run["per_episode"], offline.per_episode))
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
               "checkpoint": args.checkpoint, "episodes": args.episodes, "busy_loops": args.busy,
               "load_average_1min": os.getloadavg()[0],
               "offline": {"successes": offline.successes, "ci95": offline.ci95, "seconds": offline.seconds,
                           "steps": sum(e["steps"] for e in offline.per_episode), "per_episode": offline.per_episode},
               "runs": runs}
    write_results(results, render_table(results), args.out)


def render_table(r: dict) -> str:
    n, o = r["episodes"], r["offline"]

    def rate(successes, ci):
        return f"{successes}/{n} = {100 * successes / n:.0f}% (95% CI {100 * ci[0]:.0f}-{100 * ci[1]:.0f}%)"

    rows = [f"# minivla_ros graph benchmark, {r['date']}", "", f"Machine: {r['machine']}  ",
            f"Commit: {r['commit']}, checkpoint: {r['checkpoint']}, layouts: seed 1000, episodes 0-{n - 1}; "
            f"{r['busy_loops']} busy CPU loops during the graph runs (load average {r['load_average_1min']:.1f} at "
            f"the end)", "",
            "| run | success | same outcome as offline | same outcome and step count | steps per second |",
            "| --- | --- | --- | --- | --- |",
            f"| offline `minivla eval` (1 thread) | {rate(o['successes'], o['ci95'])} | - | - | "
            f"{o['steps'] / o['seconds']:.0f} |"]
    for run in r["runs"]:
        rows.append(f"| graph, {run['timing']} | {rate(run['successes'], run['ci95'])} | {run['same_outcome']}/{n} | "
                    f"{run['same_outcome_and_steps']}/{n} | {run['steps'] / run['seconds']:.0f} |")
    free = [run for run in r["runs"] if "control" in run]
    if free:
        rows += ["", "Free timing, the policy node's clock and latency (observation to action, transport included):",
                 "", "| run | mean tick period (target 50 ms) | tick jitter p99 | latency, first action of a chunk "
                 "p50 / p99 | latency, all actions p50 / p99 | dropped ticks |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for i, run in enumerate(free, 1):
            c, s = run["control"], run["policy_status"]
            rows.append(f"| free {i} | {c['mean_period_ms']:.2f} ms | {c['p99_jitter_ms']:.1f} ms | "
                        f"{c['sampling_tick_latency_p50_ms']:.0f} / {c['sampling_tick_latency_p99_ms']:.0f} ms | "
                        f"{c['latency_p50_ms']:.0f} / {c['latency_p99_ms']:.0f} ms | "
                        f"{s.get('dropped_ticks', 0)} of {s.get('ticks', 0)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
