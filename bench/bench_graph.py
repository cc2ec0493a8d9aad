"""Benchmark of the ROS graph: closed-loop success through real nodes versus offline `minivla eval` on the same
layouts (`--seed`, 1000 by default, episodes 0..N-1), in each timing of the graph, on a quiet machine and under
load. Seed 1000 is a validation seed, so its success rates are validation figures; the table says so.

    .venv/bin/python bench/bench_graph.py                 # the whole protocol below, 50 episodes a run (~75 min)
    .venv/bin/python bench/bench_graph.py --episodes 10 --offsets 0 --delays --busy-offsets   # a quick look

The graph runs as `minivla run` does (simulator bridge and policy node as two processes over DDS on loopback).
- lockstep (`minivla run`'s default): the bridge steps when the policy answers its newest observation. It must
  match offline eval in every episode, outcome and step count, whatever the machine's load.
- timed (a real robot's clock): the bridge steps at 20 Hz and executes the timed chunks the policy publishes,
  sampled ahead of need (minivla_core/timed.py). A run cannot be lucky in its timer phase: the policy has no
  timer, it samples when its schedule says so, and each run forces a phase instead: `--offsets` adds that many
  milliseconds to every sampling call (bench/slow_policy_node.py, a policy node whose sampler is that much slower;
  0, 12.5, 25 and 37.5 ms cover a 50 ms period). `--delays` adds 100 ms (four runs) and 300 ms to every sampling
  call, as a slow computer or a remote GPU would (+300 ms is most of a chunk's 400 ms).
  The offsets run again under `--busy` busy CPU loops.
- free (`--free-runs`): each node on its own 20 Hz timer, the newest command applied; phase and load decide.

Each run reports: success, agreement with offline per episode, and from the bridge's executor (timed): steps held
still, actions skipped (their step passed in the buffer), actions that came late (the chunk before ran them), the
largest jump of a motion action at a seam between chunks and inside one chunk; latency from observation to chunk
or command arriving here (transport included) as p50 / p99. Writes bench/results/graph.{md,json}.
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

from bench.bench_core import git_commit, machine, role_line, write_results  # noqa: E402
from bench.slow_policy_node import DELAY_VARIABLE  # noqa: E402
from minivla_core.config import VALIDATION_SEED, EnvConfig, EvalConfig  # noqa: E402
from minivla_core.evaluate import evaluate, wilson_interval  # noqa: E402
from minivla_ros import bringup  # noqa: E402


def record_latencies(stop: threading.Event, out: list) -> None:
    """Subscribe to action_command and action_chunk in a context of its own; append, for each message, the
    seconds from the observation it answers to its arrival here."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from minivla_ros import graph, qos
    from minivla_ros.conversions import stamp_to_seconds
    from minivla_ros.msg import ActionChunk, ActionCommand

    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("bench_recorder", context=context)
    for message, topic in ((ActionCommand, graph.ACTION), (ActionChunk, graph.ACTION_CHUNK)):
        node.create_subscription(message, topic.name, lambda m: out.append(
            node.get_clock().now().nanoseconds * 1e-9 - stamp_to_seconds(m.observation_stamp)), qos.profile(topic))
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


def run_graph(label: str, timing: str, episodes: int, checkpoint: str, seed: int, extra_delay: float = 0.0,
              busy: int = 0) -> dict:
    """One `minivla run` of the graph in `timing`, with the latency of every command or chunk recorded."""
    latencies: list = []
    stop = threading.Event()
    recorder = threading.Thread(target=record_latencies, args=(stop, latencies))
    recorder.start()
    time.sleep(1.0)
    overrides = {"policy_node.checkpoint": checkpoint, "bridge.timing": timing, "policy_node.timing": timing,
                 "env.seed": seed}
    os.environ[DELAY_VARIABLE] = str(extra_delay)  # read by the slowed node the run starts (bench/slow_policy_node.py)
    started = time.monotonic()
    try:
        result = bringup.run(episodes, "push-v3", "push the puck to the goal", overrides=overrides,
                             policy_module="bench.slow_policy_node" if extra_delay else None)
    finally:
        stop.set()
        recorder.join()
    latency = np.array(latencies) * 1e3 if latencies else np.zeros(1)
    run = {"label": label, "timing": timing, "extra_delay": extra_delay, "busy_loops": busy,
           "seconds": time.monotonic() - started, "successes": result.successes,
           "ci95": wilson_interval(result.successes, episodes), "per_episode": result.episodes,
           "steps": sum(e["steps"] for e in result.episodes), "messages": len(latencies),
           "latency_p50_ms": float(np.percentile(latency, 50)), "latency_p99_ms": float(np.percentile(latency, 99)),
           "policy_status": result.policy_status, "executor": result.executor,
           "load_average_1min": os.getloadavg()[0]}
    print(f"{label}: {result.successes}/{episodes}, executor {result.executor}", flush=True)
    return run


def with_busy_loops(count: int, runs, finished) -> None:
    """Run the callables in `runs` with `count` busy loops (a process each, spinning) beside them; hand each
    result to `finished`."""
    busy = [multiprocessing.Process(target=spin_forever, daemon=True) for _ in range(count)]
    for process in busy:
        process.start()
    try:
        for run in runs:
            finished(run())
    finally:
        for process in busy:
            process.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--offsets", type=float, nargs="*", default=[0.0, 12.5, 25.0, 37.5],
                        help="timed runs, one per forced phase offset (ms between an observation and its sampling)")
    parser.add_argument("--delays", type=float, nargs="*", default=[100.0, 100.0, 100.0, 100.0, 300.0],
                        help="timed runs, one per injected extra inference delay (ms)")
    parser.add_argument("--busy", type=int, default=2, help="busy CPU loops for the runs of --busy-offsets")
    parser.add_argument("--busy-offsets", type=float, nargs="*", default=[0.0, 12.5, 25.0, 37.5],
                        help="timed runs under --busy busy loops, one per forced phase offset (ms)")
    parser.add_argument("--lockstep", type=int, default=1, help="lockstep runs (quiet machine)")
    parser.add_argument("--free-runs", type=int, default=0, help="free-running runs (quiet machine)")
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "push_v3.pt"))
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help="layouts, offline and through ROS: 1000 a validation seed, 2000 and up test seeds")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "graph"))
    args = parser.parse_args()
    os.environ.update(bringup.ros_environment())

    n, checkpoint = args.episodes, args.checkpoint
    offline = evaluate(EvalConfig(checkpoint=checkpoint, episodes=n, seed=args.seed, threads=1), EnvConfig()).only
    quiet = [lambda: run_graph("lockstep", "lockstep", n, checkpoint, args.seed) for _ in range(args.lockstep)]
    quiet += [lambda ms=ms: run_graph(f"timed, offset {ms:g} ms", "timed", n, checkpoint, args.seed, ms / 1e3)
              for ms in args.offsets]
    quiet += [lambda ms=ms: run_graph(f"timed, +{ms:g} ms inference", "timed", n, checkpoint, args.seed, ms / 1e3)
              for ms in args.delays]
    quiet += [lambda: run_graph("free", "free", n, checkpoint, args.seed) for _ in range(args.free_runs)]
    busy = [lambda ms=ms: run_graph(f"timed, offset {ms:g} ms, {args.busy} busy loops", "timed", n, checkpoint,
                                    args.seed, ms / 1e3, busy=args.busy) for ms in args.busy_offsets]
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "commit": git_commit(), "checkpoint": checkpoint, "episodes": n, "seed": args.seed,
               "offline": {"successes": offline.successes, "ci95": offline.ci95, "seconds": offline.seconds,
                           "steps": sum(e["steps"] for e in offline.per_episode), "per_episode": offline.per_episode},
               "runs": [], "groups": []}

    def finished(run: dict) -> None:
        """Compare a run with offline eval and write the results so far (a long bench stopped early keeps them)."""
        run["same_outcome"] = sum(a["success"] == b["success"] for a, b in zip(run["per_episode"], offline.per_episode))
        run["same_outcome_and_steps"] = sum((a["success"], a["steps"]) == (b["success"], b["steps"])
                                            for a, b in zip(run["per_episode"], offline.per_episode))
        results["runs"].append(run)
        results["groups"] = summarize_groups(results["runs"], n, offline.successes)
        write_results(results, render_table(results), args.out)

    with_busy_loops(0, quiet, finished)
    with_busy_loops(args.busy, busy, finished)


def summarize_groups(runs: list[dict], n: int, offline_successes: int) -> list[dict]:
    """The timed runs pooled by condition (quiet / busy / each delay): success over all their episodes, with its
    distance from offline in points."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        if run["timing"] != "timed":
            continue
        if run["extra_delay"] * 1e3 > 50:
            key = f"+{run['extra_delay'] * 1e3:g} ms inference"
        else:
            key = f"{run['busy_loops']} busy loops, forced offsets" if run["busy_loops"] else "quiet, forced offsets"
        groups.setdefault(key, []).append(run)
    summary = []
    for key, members in groups.items():
        successes, episodes = sum(r["successes"] for r in members), n * len(members)
        summary.append({"condition": key, "runs": len(members), "successes": successes, "episodes": episodes,
                        "ci95": wilson_interval(successes, episodes),
                        "points_from_offline": 100 * (successes / episodes - offline_successes / n),
                        "held": sum(r["executor"].get("held", 0) for r in members),
                        "expired": sum(r["executor"].get("expired", 0) for r in members)})
    return summary


def render_table(r: dict) -> str:
    n, o = r["episodes"], r["offline"]
    seed = r.get("seed", VALIDATION_SEED)  # results from before the seed roles: seed 1000

    def rate(successes, ci, episodes=n):
        return f"{successes}/{episodes} = {100 * successes / episodes:.0f}% ({100 * ci[0]:.0f}-{100 * ci[1]:.0f}%)"

    rows = [f"# minivla_ros graph benchmark, {r['date']}", "", f"Machine: {r['machine']}  ",
            f"Commit: {r['commit']}, checkpoint: {r['checkpoint']}, push-v3, layouts: seed {seed}, episodes 0-{n - 1} "
            f"(never seen in training); proprio state, corner2 camera; 95% Wilson intervals  ", role_line(seed), "",
            f"Offline `minivla eval` (1 thread): {rate(o['successes'], o['ci95'])}, {o['steps'] / o['seconds']:.0f} "
            f"steps a second.", "",
            "| run | success | same outcome as offline | same outcome and steps | held steps | skipped actions | "
            "late actions | largest jump at a seam / inside a chunk | latency p50 / p99 | load |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in r["runs"]:
        x = run["executor"]
        timed = run["timing"] == "timed"
        executor = (f"{x.get('held', 0):.0f} | {x.get('expired', 0):.0f} | {x.get('late', 0):.0f} | "
                    f"{x.get('max_seam_jump', 0):.2f} / {x.get('max_step_jump', 0):.2f}" if timed else "- | - | - | -")
        rows.append(f"| {run['label']} | {rate(run['successes'], run['ci95'])} | {run['same_outcome']}/{n} | "
                    f"{run['same_outcome_and_steps']}/{n} | {executor} | {run['latency_p50_ms']:.0f} / "
                    f"{run['latency_p99_ms']:.0f} ms | {run['load_average_1min']:.1f} |")
    if r["groups"]:
        rows += ["", "Timed runs pooled by condition:", "",
                 "| condition | runs | success | points from offline | held steps | skipped actions |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for g in r["groups"]:
            rows.append(f"| {g['condition']} | {g['runs']} | {rate(g['successes'], g['ci95'], g['episodes'])} | "
                        f"{g['points_from_offline']:+.1f} | {g['held']:.0f} | {g['expired']:.0f} |")
    rows += ["", "Held steps: steps of a started episode with no action due (the arm held still). Skipped: actions "
             "whose step passed while they waited in the buffer. Late: actions that arrived after their step (the "
             "chunk before ran it: sampling latency, by design). Jumps: the largest change of a motion action "
             "(of 1 = full speed) from one step to the next. Latency: observation stamp to the chunk's (or "
             "command's) arrival at a third node, transport included; for timed runs it includes the forced offset "
             "or delay. Load: 1-minute load average at the end of the run."]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
