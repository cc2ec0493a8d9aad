"""Soak test of the ROS graph: the simulator bridge and the policy node acting for 30 minutes.

    .venv/bin/python bench/bench_soak.py                    # 30 minutes, bundled push-v3 checkpoint
    .venv/bin/python bench/bench_soak.py --minutes 5        # a shorter look

The graph runs as `minivla run` runs it. Every 10 s this process samples each node's resident
memory (VmRSS from /proc) and the policy node's own counters (PolicyStatus: ticks, dropped ticks).
It reports episodes finished and their success, memory at the start (after the first minute, when
allocations have settled) and at the end with the growth per hour from a least-squares line, and
the share of control ticks the policy node dropped. Writes bench/results/soak.{md,json}. The layouts are the
parameter file's (env.seed 1000, a validation seed): its success count is a validation figure, and the page says so.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, write_results  # noqa: E402
from minivla_core.config import VALIDATION_SEED, figure_label  # noqa: E402
from minivla_ros import bringup  # noqa: E402


def rss_mib(pid: int) -> float | None:
    try:
        line = next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


class Sampler:
    """Called by bringup.run twice a second; keeps one sample per node every `every` seconds."""

    def __init__(self, every: float):
        self.every, self.next_at, self.started = every, 0.0, time.monotonic()
        self.samples: list[dict] = []

    def __call__(self, processes, monitor) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.every
        status = monitor.policy_status
        self.samples.append({"t": round(now - self.started, 1), "episodes": len(monitor.finished),
                             "rss_mib": {p.name: rss_mib(p.pid) for p in processes},
                             "ticks": status.ticks if status else 0,
                             "dropped_ticks": status.dropped_ticks if status else 0})


def memory_summary(samples: list[dict], node: str, settle: float = 60.0) -> dict:
    points = [(s["t"], s["rss_mib"][node]) for s in samples if s["rss_mib"].get(node) is not None and s["t"] >= settle]
    if len(points) < 2:
        return {}
    t, rss = np.array(points).T
    slope = np.polyfit(t, rss, 1)[0] * 3600  # MiB per hour
    return {"start_mib": float(rss[0]), "end_mib": float(rss[-1]), "max_mib": float(rss.max()),
            "growth_mib_per_hour": float(slope)}


def render(results: dict) -> str:
    lines = [f"# Soak: the ROS graph acting for {results['minutes']:.0f} minutes, {results['date']}", "",
             f"Machine: {results['machine']}  ", f"Commit: {results['commit']}, checkpoint: {results['checkpoint']}",
             "", f"Episodes finished: {results['episodes']} ({results['successes']} successful; "
                 f"{figure_label(results.get('seed', VALIDATION_SEED))}); "
                 f"policy ticks {results['ticks']}, dropped {results['dropped_ticks']} "
                 f"({100 * results['dropped_share']:.2f}%)", "",
             "Resident memory per node (from the first minute on; growth is a least-squares slope):", "",
             "| node | start (MiB) | end (MiB) | max (MiB) | growth (MiB/hour) |", "| --- | --- | --- | --- | --- |"]
    for node, m in results["memory"].items():
        if m:
            lines.append(f"| {node} | {m['start_mib']:.1f} | {m['end_mib']:.1f} | {m['max_mib']:.1f} | "
                         f"{m['growth_mib_per_hour']:+.1f} |")
    lines += ["", "Command: `.venv/bin/python bench/bench_soak.py --minutes "
                  f"{results['minutes']:g}`; samples every {results['sample_every_s']:g} s in soak.json."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--checkpoint", default="checkpoints/push_v3.pt")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak"))
    args = parser.parse_args()
    os.environ.update(bringup.ros_environment())

    sampler = Sampler(args.every)
    result = bringup.run(0, "push-v3", "push the puck to the goal",
                         overrides={"policy_node.checkpoint": args.checkpoint, "env.seed": VALIDATION_SEED},
                         duration=60 * args.minutes, observe=sampler)
    last = sampler.samples[-1] if sampler.samples else {"ticks": 0, "dropped_ticks": 0}
    nodes = sorted({name for s in sampler.samples for name in s["rss_mib"]})
    results = {"date": datetime.date.today().isoformat(), "commit": git_commit(), "machine": machine(),
               "checkpoint": args.checkpoint, "minutes": args.minutes, "sample_every_s": args.every,
               "seed": VALIDATION_SEED,
               "episodes": len(result.episodes), "successes": result.successes,
               "ticks": last["ticks"], "dropped_ticks": last["dropped_ticks"],
               "dropped_share": last["dropped_ticks"] / max(1, last["ticks"] + last["dropped_ticks"]),
               "memory": {node: memory_summary(sampler.samples, node) for node in nodes},
               "samples": sampler.samples}
    write_results(results, render(results), args.out)


if __name__ == "__main__":
    main()
