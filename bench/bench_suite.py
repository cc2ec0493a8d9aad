"""A Meta-World suite under LeRobot's protocol as a results page: `minivla eval --suite` (docs/evaluation.md) with
the date, commit, machine and evaluation time every page in bench/results carries.

    .venv/bin/python bench/bench_suite.py --checkpoint checkpoints/mt50.pt --suite mt50 --seed 2000 \
        --instructions lerobot --workers 2 --out bench/results/mt50_test
    .venv/bin/python bench/bench_suite.py --checkpoint checkpoints/multitask.pt --suite mt10 --seed 2000 \
        --out bench/results/multitask_mt10

--seed has no default, so that every page is measured in a role chosen on purpose: a test seed (2000 and up) for
the figures to report, once per checkpoint; a validation seed (1000-1999) while choosing. The page says which, with
the difficulty-group table beside the published rows (their protocol, their numbers) and each task's result.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, write_results  # noqa: E402
from minivla_core.checkpoint import read_checkpoint  # noqa: E402
from minivla_core.config import EnvConfig, EvalConfig  # noqa: E402
from minivla_core.envs.metaworld_suites import PROTOCOL  # noqa: E402
from minivla_core.evaluate import evaluate  # noqa: E402


def render(results: dict, page: str) -> str:
    """The suite's own page (MultiEvalResult.markdown) under the lines every results page starts with."""
    title, rest = page.split("\n", 1)
    return "\n".join([f"{title}, {results['date']}", "", f"Machine: {results['machine']}  ",
                      f"Commit: {results['commit']}; evaluated in {results['seconds'] / 60:.1f} min on "
                      f"{results.get('workers', 1)} worker process(es) of {results['threads']} policy thread(s); "
                      f"command: `{results['command']}`", rest.rstrip("\n")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--suite", default="mt50", help="mt50, mt10 or MT50 task names separated by commas")
    parser.add_argument("--seed", type=int, required=True,
                        help="layouts: 2000 and up test seeds (to report), 1000-1999 validation seeds (to choose)")
    parser.add_argument("--episodes", type=int, default=PROTOCOL["episodes"], help="per task (the protocol: 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the policy (per worker)")
    parser.add_argument("--workers", type=int, default=1, help="processes evaluating tasks at once (eval.workers)")
    parser.add_argument("--instructions", default="plain",
                        help="plain (ours) or lerobot (LeRobot's task descriptions: the protocol's instruction)")
    parser.add_argument("--out", required=True, help="OUT.md and OUT.json are written")
    args = parser.parse_args()

    observation = read_checkpoint(args.checkpoint)["env"]["observation"]  # a privileged one is listed as a deviation
    started = time.perf_counter()
    result = evaluate(EvalConfig(checkpoint=args.checkpoint, suite=args.suite, seed=args.seed, episodes=args.episodes,
                                 threads=args.threads, workers=args.workers, instructions=args.instructions),
                      EnvConfig(observation=observation))
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
               "seconds": time.perf_counter() - started, "threads": args.threads, "workers": args.workers,
               "command": "bench/bench_suite.py " + " ".join(sys.argv[1:]), **result.to_dict()}
    write_results(results, render(results, result.markdown()), args.out)


if __name__ == "__main__":
    main()
