"""Benchmark: the cost of --view on the control loop. The rerun view of what the policy sees and plans
(minivla_core/view.py) logs every observation, action and chunk, and samples each chunk a second time, step by step,
to show its denoising: this measures what that costs the loop that commands the robot, with push-v3 and
checkpoints/push_v3.pt on the validation layouts (seed 1000, episodes 0..N-1).

    .venv/bin/python bench/bench_view.py                   # bench/results/view.{md,json} (2-3 min on 2 cores)
    .venv/bin/python bench/bench_view.py --episodes 1 --repeats 1 --out /tmp/view_check   # a quick look
    .venv/bin/python bench/bench_view.py --skip-graph      # the offline loop only

1. The offline loop (`minivla eval`, 1 thread), where the view logs synchronously in the loop: view off, the
   recording written to an .rrd file (`--view-save`), and streamed to a served viewer (`--view`: a ViewerServer on a
   free pair of ports, a PolicyView streaming to it), each run --repeats times, the three interleaved so that a
   change of the machine's load falls on all of them. Reported: milliseconds per control step (the episode loop's
   wall time over its steps) as the median and range over the repeats, the overhead against view off, the time to
   close the view (flushing what rerun still buffers), and whether every episode's outcome and step count are the
   same as with view off: the view must not change what the policy does (it draws no noise from the policy's
   sampler). Then the .rrd file's size per episode and per step.
2. The ROS graph (`minivla run`: simulator bridge and policy node as two processes), view off and on
   (policy_node.view_url streaming to a fresh ViewerServer per run, as `minivla run --view` does), where the node's
   LiveView logs on a thread of its own and drops steps when it falls behind, so that the control loop never waits
   for it; its thread still shares the node's process (and its interpreter lock) and the machine's cores.
   - lockstep (the bridge steps when the policy answers): observations answered per second and the sampling latency
     p50 / p99 the policy node reports (policy_status), success, and whether each episode's outcome and steps equal
     those of the first view-off run (lockstep is deterministic: they must);
   - timed (the bridge steps at 20 Hz, the robot's clock, and executes the timed chunks): latency from observation
     to chunk p50 / p99 (policy_status), the bridge executor's counts (steps held still, actions expired in the
     buffer, actions applied) and success.
   Each figure is the median and range over --repeats runs of --episodes episodes. Held steps depend on how the
   processes were scheduled: read them as a range, not a single number. The view's dropped steps come from the
   policy node's log ("the view fell behind and dropped N steps", logged at its shutdown only when it dropped any);
   "-" where the log has no such line.
Writes the date, commit, machine and the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, role_line, write_results  # noqa: E402
from minivla_core.config import VALIDATION_SEED, EnvConfig, EvalConfig  # noqa: E402
from minivla_core.evaluate import evaluate  # noqa: E402
from minivla_core.view import PolicyView, ViewerServer  # noqa: E402

TASK, INSTRUCTION = "push-v3", "push the puck to the goal"
EVAL_MODES = ["off", "save", "served"]  # view off; --view-save FILE.rrd; --view (a served viewer)
EVAL_LABELS = {"off": "off", "save": "`--view-save` (.rrd file)", "served": "`--view` (served viewer)"}
DROPPED_LINE = re.compile(r"view.*dropped (\d+)")  # the policy node's "the view fell behind and dropped N steps"


def free_port_pair() -> int:
    """A port p of this computer such that p and p + 1 are free: a ViewerServer's page and recording."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65535 and all(port_is_free(p) for p in (port, port + 1)):
            return port
    raise RuntimeError("found no pair of free ports for the viewer")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def eval_once(mode: str, checkpoint: str, episodes: int, seed: int, folder: Path) -> dict:
    """One `minivla eval` of `episodes` episodes with the view `mode`, built as cmd_eval builds it (the view made
    outside evaluate and passed in, closed after it)."""
    save = str(folder / f"eval_{mode}.rrd") if mode == "save" else ""
    config = EvalConfig(checkpoint=checkpoint, episodes=episodes, seed=seed, threads=1, view=mode == "served",
                        view_save=save)
    server = ViewerServer(free_port_pair()) if mode == "served" else None
    try:
        view = PolicyView.for_eval(config, server)
        result = evaluate(config, EnvConfig(), progress=False, view=view).only
        started = time.perf_counter()
        view.close()
        close_seconds = time.perf_counter() - started
    finally:
        if server:
            server.close()
    steps = sum(e["steps"] for e in result.per_episode)
    run = {"mode": mode, "seconds": result.seconds, "steps": steps, "ms_per_step": 1e3 * result.seconds / steps,
           "close_seconds": close_seconds, "successes": result.successes,
           "per_episode": [{"episode": e["episode"], "success": e["success"], "steps": e["steps"]}
                           for e in result.per_episode]}
    if save:
        run["rrd_bytes"] = Path(save).stat().st_size
        Path(save).unlink()
    print(f"eval, view {mode}: {run['ms_per_step']:.2f} ms/step, {result.successes}/{episodes}", flush=True)
    return run


class LineCatcher:
    """Stands in for sys.stdout while a graph runs: passes everything on, and keeps the lines (the nodes' output,
    which bringup echoes line by line), to read the policy node's log afterwards."""

    def __init__(self, stream):
        self.stream, self.lines, self.partial = stream, [], ""
        self.lock = threading.Lock()  # each node's output is echoed by a thread of its own

    def write(self, text: str) -> int:
        with self.lock:
            self.partial += text
            *done, self.partial = self.partial.split("\n")
            self.lines += done
            return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def dropped_steps(lines: list[str]) -> int | None:
    """The steps the policy node's view dropped, as its log says; None if the log has no line about it."""
    for line in lines:
        found = DROPPED_LINE.search(line) if "[policy_node]" in line and "dropped" in line else None
        if found:
            return int(found.group(1))
    return None


def graph_once(timing: str, view: bool, checkpoint: str, episodes: int, seed: int) -> dict:
    """One `minivla run` of the graph in `timing`, with or without the view (a fresh ViewerServer for it)."""
    from minivla_ros import bringup

    overrides = {"policy_node.checkpoint": checkpoint, "bridge.timing": timing, "policy_node.timing": timing,
                 "env.seed": seed}
    server = ViewerServer(free_port_pair(), "run.view_port") if view else None
    if server:
        overrides["policy_node.view_url"] = server.uri
    catcher = sys.stdout = LineCatcher(sys.stdout)
    started = time.monotonic()
    try:
        result = bringup.run(episodes, TASK, INSTRUCTION, overrides=overrides)
    finally:
        sys.stdout = catcher.stream
        if server:
            server.close()
    status, executor = result.policy_status, result.executor
    run = {"timing": timing, "view": view, "seconds": time.monotonic() - started, "successes": result.successes,
           "per_episode": result.episodes, "policy_status": status, "executor": executor,
           "achieved_rate": status.get("achieved_rate", 0.0),
           "latency_p50_ms": status.get("sampling_latency_p50_ms", 0.0),
           "latency_p99_ms": status.get("sampling_latency_p99_ms", 0.0),
           "held": executor.get("held", 0.0), "expired": executor.get("expired", 0.0),
           "applied": executor.get("applied", 0.0), "view_dropped": dropped_steps(catcher.lines) if view else None,
           "load_average_1min": os.getloadavg()[0]}
    print(f"graph {timing}, view {'on' if view else 'off'}: {result.successes}/{episodes}, status {status}, "
          f"executor {executor}, view dropped {run['view_dropped']}", flush=True)
    return run


def spread(values: list[float], digits: int = 1) -> str:
    """The median and, over several values, their range: "7.6 (7.5-7.8)"."""
    median = f"{np.median(values):.{digits}f}"
    if len(values) < 2:
        return median
    return f"{median} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def same_episodes(run: dict, reference: dict) -> int:
    """How many episodes of `run` have the outcome and step count of `reference`'s."""
    return sum((a["success"], a["steps"]) == (b["success"], b["steps"])
               for a, b in zip(run["per_episode"], reference["per_episode"]))


def summarize_eval(runs: list[dict]) -> list[dict]:
    off = [r for r in runs if r["mode"] == "off"]
    off_median = float(np.median([r["ms_per_step"] for r in off]))
    rows = []
    for mode in EVAL_MODES:
        members = [r for r in runs if r["mode"] == mode]
        median = float(np.median([r["ms_per_step"] for r in members]))
        row = {"mode": mode, "runs": len(members), "ms_per_step": [r["ms_per_step"] for r in members],
               "ms_per_step_median": median, "overhead_ms": median - off_median,
               "overhead_percent": 100 * (median - off_median) / off_median,
               "close_seconds": [r["close_seconds"] for r in members],
               "successes": [r["successes"] for r in members],
               "identical_to_off": all(r["per_episode"] == off[0]["per_episode"] for r in members)}
        if mode == "save":
            episodes, steps = len(members[0]["per_episode"]), members[0]["steps"]
            sizes = [r["rrd_bytes"] for r in members]
            row.update(rrd_bytes=sizes, rrd_mb_per_episode=float(np.median(sizes)) / 1e6 / episodes,
                       rrd_kb_per_step=float(np.median(sizes)) / 1e3 / steps)
        rows.append(row)
    return rows


def render_table(r: dict) -> str:
    n = r["episodes"]
    rows = [f"# The cost of --view on the control loop, {r['date']}", "", f"Machine: {r['machine']}  ",
            f"Commit: {r['commit']}, checkpoint: {r['checkpoint']}, {TASK}, layouts: seed {r['seed']}, episodes "
            f"0-{n - 1}; {r['repeats']} repeats of each run; load average (1 min) {r['load_before']:.2f} before, "
            f"{r['load_after']:.2f} after  ", role_line(r["seed"]), "",
            "## The offline loop (`minivla eval`, 1 thread): the view logs in the loop", "",
            "| view | ms per control step, median (range) | overhead vs off | closing the view, s | success | "
            "every episode's outcome and steps as with view off |",
            "| --- | --- | --- | --- | --- | --- |"]
    for row in r["eval"]:
        overhead = ("-" if row["mode"] == "off" else
                    f"{row['overhead_ms']:+.2f} ms ({row['overhead_percent']:+.0f}%)")
        close = "-" if row["mode"] == "off" else spread(row["close_seconds"], 2)
        rows.append(f"| {EVAL_LABELS[row['mode']]} | {spread(row['ms_per_step'], 2)} | {overhead} | {close} | "
                    f"{', '.join(f'{s}/{n}' for s in row['successes'])} | "
                    f"{'identical' if row['identical_to_off'] else '**differs**'} |")
    save = next(row for row in r["eval"] if row["mode"] == "save")
    rows += ["", f"The .rrd file (`--view-save`): {save['rrd_mb_per_episode']:.2f} MB per episode, "
             f"{save['rrd_kb_per_step']:.1f} kB per control step (sizes of the {len(save['rrd_bytes'])} runs: "
             f"{', '.join(f'{b / 1e6:.2f}' for b in save['rrd_bytes'])} MB for {n} episodes)."]
    graph = r.get("graph")
    if graph:
        def cells(view: bool, timing: str, key: str, digits: int = 1) -> str:
            return spread([run[key] for run in graph if run["view"] == view and run["timing"] == timing], digits)

        def dropped(view: bool, timing: str) -> str:
            if not view:
                return "-"
            counts = [run["view_dropped"] for run in graph if run["view"] and run["timing"] == timing]
            return ", ".join("-" if c is None else str(c) for c in counts)

        def success(view: bool, timing: str) -> str:
            return ", ".join(f"{run['successes']}/{r['graph_episodes']}" for run in graph
                             if run["view"] == view and run["timing"] == timing)

        reference = next((run for run in graph if run["timing"] == "lockstep" and not run["view"]), None)
        rows += ["", f"## The ROS graph (`minivla run`), view off and on (policy_node.view_url): "
                 f"{r['graph_episodes']} episodes a run, median (range) over {r['graph_repeats']} runs", "",
                 "Lockstep (the bridge steps when the policy answers):", "",
                 "| view | observations answered per second | sampling latency p50 / p99, ms | success | "
                 "outcome and steps as the first view-off run | steps the view dropped |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for view in (False, True):
            same = ", ".join(f"{same_episodes(run, reference)}/{len(run['per_episode'])}" for run in graph
                             if run["timing"] == "lockstep" and run["view"] == view) if reference else "-"
            rows.append(f"| {'on' if view else 'off'} | {cells(view, 'lockstep', 'achieved_rate')} | "
                        f"{cells(view, 'lockstep', 'latency_p50_ms')} / {cells(view, 'lockstep', 'latency_p99_ms')} | "
                        f"{success(view, 'lockstep')} | {same} | {dropped(view, 'lockstep')} |")
        rows += ["", "Timed (the bridge steps at 20 Hz and executes the timed chunks):", "",
                 "| view | latency observation to chunk p50 / p99, ms | held steps | expired actions | "
                 "actions applied | success | steps the view dropped |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for view in (False, True):
            rows.append(f"| {'on' if view else 'off'} | {cells(view, 'timed', 'latency_p50_ms')} / "
                        f"{cells(view, 'timed', 'latency_p99_ms')} | {cells(view, 'timed', 'held', 0)} | "
                        f"{cells(view, 'timed', 'expired', 0)} | {cells(view, 'timed', 'applied', 0)} | "
                        f"{success(view, 'timed')} | {dropped(view, 'timed')} |")
    rows += ["", "Offline, ms per control step: the episode loop's wall time (observation, sampling every "
             "n_action_steps-th step, simulation, rendering, and the view's logging and second, step-by-step "
             "sampling of each chunk for its denoising) over its steps; the view's modes were interleaved run by run. "
             "Closing the view: flushing what rerun still buffered, after the loop. Graph: the policy node's own "
             "figures (policy_status, while active) and the bridge executor's counts. Held steps: steps of a started "
             "episode with no action due; they depend on how the processes were scheduled, so read their range, "
             "not one number. Expired: actions whose step passed while they waited in the buffer. Steps the view "
             "dropped: one figure per view-on run, from the policy node's log at shutdown; \"-\": no such line (the "
             "node logs one only when the view dropped steps)."]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes a run: offline eval (default 5) and graph (default 3)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each setting (default: 3 offline, 2 graph)")
    parser.add_argument("--skip-graph", action="store_true", help="measure the offline loop only")
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "push_v3.pt"))
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "view"))
    args = parser.parse_args()
    eval_episodes, graph_episodes = args.episodes or 5, args.episodes or 3
    eval_repeats, graph_repeats = args.repeats or 3, args.repeats or 2

    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "commit": git_commit(), "checkpoint": args.checkpoint, "seed": args.seed, "episodes": eval_episodes,
               "repeats": eval_repeats, "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="minivla-bench-view-") as folder:
        runs = [eval_once(mode, args.checkpoint, eval_episodes, args.seed, Path(folder))
                for _ in range(eval_repeats) for mode in EVAL_MODES]
    results["eval_runs"], results["eval"] = runs, summarize_eval(runs)
    if not args.skip_graph:
        from minivla_ros import bringup

        os.environ.update(bringup.ros_environment())
        results["graph_episodes"], results["graph_repeats"] = graph_episodes, graph_repeats
        results["graph"] = [graph_once(timing, view, args.checkpoint, graph_episodes, args.seed)
                            for timing in ("lockstep", "timed") for _ in range(graph_repeats)
                            for view in (False, True)]
    results["load_after"] = os.getloadavg()[0]
    write_results(results, render_table(results), args.out)


if __name__ == "__main__":
    main()
