"""Benchmark of the ROS graph: closed-loop success through real nodes versus offline `minivla eval`
on the same layouts, and how well the policy node holds its control rate.

    .venv/bin/python bench/bench_graph.py               # 25 episodes (>60 s of control at 20 Hz)

The graph runs as `minivla run` does (simulator bridge and policy node as two processes over
DDS on loopback). This process also records every action command: its header stamp is taken
by the policy node when the tick fires, so consecutive stamps give the node's own tick periods;
arrival time here minus observation_stamp (the stamp of the camera image the action's chunk was
sampled from) is the observation-to-action latency, transport included. Writes
bench/results/graph.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
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
    """Subscribe to action_command in a context of its own; append (tick stamp, obs stamp, step_in_chunk,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=25)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "push_v3.pt"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "graph"))
    args = parser.parse_args()
    os.environ.update(bringup.ros_environment())

    commands: list = []
    stop = threading.Event()
    recorder = threading.Thread(target=record_commands, args=(stop, commands))
    recorder.start()
    time.sleep(1.0)
    started = time.monotonic()
    try:
        through_graph = bringup.run(args.episodes, "push-v3", "push the puck to the goal",
                            overrides={"policy_node.checkpoint": args.checkpoint})
    finally:
        stop.set()
        recorder.join()
    graph_seconds = time.monotonic() - started

    offline = evaluate(EvalConfig(checkpoint=args.checkpoint, episodes=args.episodes, seed=1000), EnvConfig()).only

    stamps = np.array([c[0] for c in commands])
    periods = np.diff(stamps) * 1e3
    latency = (np.array([c[3] for c in commands]) - np.array([c[1] for c in commands])) * 1e3
    sampling = np.array([c[2] == 0 for c in commands])
    results = {
        "date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
        "checkpoint": args.checkpoint, "episodes": args.episodes, "graph_seconds": graph_seconds,
        "graph": {"successes": through_graph.successes, "success_rate": through_graph.successes / args.episodes,
                  "ci95": wilson_interval(through_graph.successes, args.episodes),
                  "per_episode": through_graph.episodes},
        "offline": {"successes": offline.successes, "success_rate": offline.success_rate, "ci95": offline.ci95,
                    "per_episode": offline.per_episode},
        "commands": len(commands),
        "control": {"seconds_of_commands": float(stamps[-1] - stamps[0]), "mean_period_ms": float(periods.mean()),
                    "p99_jitter_ms": float(np.percentile(np.abs(periods - 50.0), 99)),
                    "max_period_ms": float(periods.max()),
                    "latency_p50_ms": float(np.percentile(latency, 50)),
                    "latency_p99_ms": float(np.percentile(latency, 99)),
                    "sampling_tick_latency_p50_ms": float(np.percentile(latency[sampling], 50)),
                    "sampling_tick_latency_p99_ms": float(np.percentile(latency[sampling], 99))},
        "policy_status": through_graph.policy_status,
    }
    write_results(results, render_table(results), args.out)


def render_table(r: dict) -> str:
    g, o, c, s = r["graph"], r["offline"], r["control"], r["policy_status"]
    same = sum(a["success"] == b["success"] for a, b in zip(g["per_episode"], o["per_episode"]))
    return "\n".join([
        f"# minivla_ros graph benchmark, {r['date']}", "", f"Machine: {r['machine']}  ",
        f"Commit: {r['commit']}, checkpoint: {r['checkpoint']}, layouts: seed 1000, episodes 0-{r['episodes'] - 1}", "",
        "| measure | value |", "| --- | --- |",
        f"| success through the ROS graph | {g['successes']}/{r['episodes']} = {100 * g['success_rate']:.0f}% "
        f"(95% CI {100 * g['ci95'][0]:.0f}-{100 * g['ci95'][1]:.0f}%) |",
        f"| success offline (`minivla eval`, same layouts) | {o['successes']}/{r['episodes']} = "
        f"{100 * o['success_rate']:.0f}% (95% CI {100 * o['ci95'][0]:.0f}-{100 * o['ci95'][1]:.0f}%) |",
        f"| episodes with the same outcome | {same}/{r['episodes']} |",
        f"| action commands recorded | {r['commands']} over {c['seconds_of_commands']:.1f} s |",
        f"| mean tick period (target 50 ms) | {c['mean_period_ms']:.2f} ms "
        f"({100 * (c['mean_period_ms'] / 50 - 1):+.2f}%) |",
        f"| tick jitter p99 (abs. deviation from 50 ms) | {c['p99_jitter_ms']:.2f} ms "
        f"(max period {c['max_period_ms']:.1f} ms) |",
        f"| observation-to-action latency, first action of each chunk | "
        f"p50 {c['sampling_tick_latency_p50_ms']:.1f} ms, p99 {c['sampling_tick_latency_p99_ms']:.1f} ms |",
        f"| observation-to-action latency, all actions (later ones wait in the chunk) | "
        f"p50 {c['latency_p50_ms']:.1f} ms, p99 {c['latency_p99_ms']:.1f} ms |",
        f"| policy node's own report (last 10 s) | {s.get('achieved_rate', 0):.2f} Hz, sampling p50 "
        f"{s.get('sampling_latency_p50_ms', 0):.1f} ms / p99 {s.get('sampling_latency_p99_ms', 0):.1f} ms, "
        f"{s.get('dropped_ticks', 0)} dropped ticks of {s.get('ticks', 0)} |",
    ])


if __name__ == "__main__":
    main()
