"""Collection throughput on this machine: scripted-expert frames recorded per second with one worker process and
with several (collect.workers), on the same tasks, into fresh folders. Prints a table and writes
bench/results/collect.{md,json} with the date, the commit and the machine.

    .venv/bin/python bench/bench_collect.py                       # 6 tasks x 5 episodes, 96 px, 1 and 2 workers
    .venv/bin/python bench/bench_collect.py --workers 1 2 --episodes 10 --image-size 96

The tasks are one or two of each MT50 difficulty group (so short and long episodes are both in the mix). A frame
is one step: the camera image rendered, the expert's action, the env stepped, the episode compressed to disk.
Each run records the same episodes (the layouts depend only on the seed), so the rows differ only in how the work
is spread. Run it on a quiet machine: another process on the cores is time the workers do not get.
"""

from __future__ import annotations

import argparse
import os
import datetime
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, write_results  # noqa: E402
from minivla_core.config import CollectConfig, EnvConfig  # noqa: E402
from minivla_core.data.collect import collect  # noqa: E402

TASKS = ["reach-v3", "drawer-open-v3", "basketball-v3", "peg-insert-side-v3", "push-v3", "stick-pull-v3"]


def render_table(results: dict) -> str:
    lines = [f"# Collection throughput, {results['date']}", "",
             f"Machine: {results['machine']}  ",
             f"Commit: {results['commit']}; command: `{results['command']}`; 1-minute load average "
             f"{results['load_before']:.1f} before, {results['load_after']:.1f} after", "",
             f"{len(results['tasks'])} tasks ({', '.join(results['tasks'])}) x {results['episodes']} successful "
             f"episodes, {results['image_size']} px, one camera.", "",
             "| workers | frames | episodes kept | dropped | seconds | frames/s | speed-up |", "| --- |" + " --- |" * 6]
    first = results["runs"][0]["frames_per_second"]
    for run in results["runs"]:
        lines.append(f"| {run['workers']} | {run['frames']} | {run['kept']} | {run['dropped']} | {run['seconds']:.1f} "
                     f"| {run['frames_per_second']:.0f} | {run['frames_per_second'] / first:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--episodes", type=int, default=5, help="successful episodes per task")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", default=str(ROOT / "bench/results/collect"))
    args = parser.parse_args()

    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
               "load_before": os.getloadavg()[0],
               "command": "bench/bench_collect.py " + " ".join(sys.argv[1:]), "tasks": TASKS,
               "episodes": args.episodes, "image_size": args.image_size, "runs": []}
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as folder:
            result = collect(EnvConfig(image_size=args.image_size),
                             CollectConfig(out=str(Path(folder) / "data"), episodes=args.episodes, tasks=TASKS,
                                           workers=workers), progress=False)
        results["runs"].append({"workers": workers, "frames": result.steps, "kept": result.kept,
                                "dropped": result.dropped, "seconds": result.seconds,
                                "frames_per_second": result.steps / result.seconds})
        print(f"{workers} worker(s): {result.steps} frames in {result.seconds:.1f} s", flush=True)
    results["load_after"] = os.getloadavg()[0]  # the 1-minute load average: what else wanted the cores
    write_results(results, render_table(results), args.out)


if __name__ == "__main__":
    main()
