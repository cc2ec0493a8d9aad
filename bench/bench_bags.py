"""Benchmark of demonstrations through ROS: record expert episodes through the graph as a bag,
convert the bag to a dataset, train with the bundled checkpoint's recipe, and compare success
with the policy trained on directly collected demos (the bundled checkpoint).

    .venv/bin/python bench/bench_bags.py            # 100 episodes at 20 Hz, ~15 minutes on 2 cores

Reports recording throughput, bag size per episode, whether anything was lost (every recorded
robot state answered by a recorded action), conversion and training time, and both success
rates over the same 50 unseen layouts (`--seed`: 1000, a validation seed, unless told; the table says the role
of its figures). Writes bench/results/bags.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, role_line, write_results  # noqa: E402
from minivla_core.config import VALIDATION_SEED, Config, EnvConfig, EvalConfig  # noqa: E402
from minivla_core.evaluate import evaluate  # noqa: E402
from minivla_core.train import train  # noqa: E402
from minivla_ros import bringup  # noqa: E402
from minivla_ros.bag2data import convert  # noqa: E402


def count_losses(bag: Path) -> dict:
    """Recorded states, recorded actions, and states that no recorded action answers."""
    from mcap_ros2.reader import read_ros2_messages

    states, answered, actions = set(), set(), 0
    for m in read_ros2_messages(str(next(bag.glob("*.mcap")))):
        if m.channel.topic == "/robot_state":
            states.add((m.ros_msg.header.stamp.sec, m.ros_msg.header.stamp.nanosec))
        elif m.channel.topic == "/action_command":
            actions += 1
            answered.add((m.ros_msg.observation_stamp.sec, m.ros_msg.observation_stamp.nanosec))
    return {"states": len(states), "actions": actions, "unanswered_states": len(states - answered),
            "answers_to_unrecorded_states": len(answered - states)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help="layouts of the evaluation: 1000 a validation seed, 2000 and up test seeds")
    parser.add_argument("--step-rate", type=float, default=20.0)
    parser.add_argument("--work", help="folder for bag, dataset and run (default: a temp dir)")
    parser.add_argument("--baseline", default=str(ROOT / "checkpoints" / "push_v3.pt"),
                        help="policy trained on directly collected demos")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bags"))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="minivla-bench-bags-"))
    bag, dataset = work / "bag", work / "data"
    os.environ.update(bringup.ros_environment())

    results: dict = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
                     "episodes": args.episodes, "step_rate": args.step_rate}
    start = time.perf_counter()
    recorded = bringup.record(args.episodes, "push-v3", "push the puck to the goal", bag, step_rate=args.step_rate)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in bag.iterdir())
    steps = sum(e["steps"] for e in recorded.episodes)
    results["record"] = {"seconds": seconds, "episodes": len(recorded.episodes), "successes": recorded.successes,
                         "steps": steps, "bag_bytes": size, "bytes_per_episode": size / max(1, len(recorded.episodes)),
                         **count_losses(bag)}

    start = time.perf_counter()
    summary = convert([bag], dataset)
    results["convert"] = {"seconds": time.perf_counter() - start, "episodes": summary.episodes, "steps": summary.steps,
                          "dropped_failed": summary.dropped_failed, "dropped_incomplete": summary.dropped_incomplete}

    config = Config()  # the bundled checkpoint's recipe: every default
    config.train.dataset, config.train.out_dir = str(dataset), str(work / "run")
    start = time.perf_counter()
    train(config)
    results["train"] = {"seconds": time.perf_counter() - start, "epochs": config.train.epochs}

    for name, checkpoint in (("from_bags", work / "run" / "best.pt"), ("direct", Path(args.baseline))):
        result = evaluate(EvalConfig(checkpoint=str(checkpoint), episodes=args.eval_episodes, seed=args.seed),
                          EnvConfig()).only
        results[name] = {k: v for k, v in result.__dict__.items() if k != "per_episode"}

    write_results(results, render_table(results), args.out)


def render_table(r: dict) -> str:
    rec, conv = r["record"], r["convert"]

    def success(e):
        return (f"{e['successes']}/{e['episodes']} = {100 * e['success_rate']:.0f}% "
                f"(95% CI {100 * e['ci95'][0]:.0f}-{100 * e['ci95'][1]:.0f}%)")

    return "\n".join([
        f"# Demonstrations through ROS, {r['date']}", "", f"Machine: {r['machine']}  ", f"Commit: {r['commit']}  ",
        role_line(r["from_bags"].get("seed", VALIDATION_SEED)), "",
        "| measure | value |", "| --- | --- |",
        f"| record {rec['episodes']} push-v3 expert episodes through the graph at {r['step_rate']:.0f} Hz "
        f"({rec['successes']} successful, {rec['steps']} steps) | {rec['seconds']:.0f} s = "
        f"{60 * rec['episodes'] / rec['seconds']:.1f} episodes/min, {rec['steps'] / rec['seconds']:.1f} steps/s |",
        f"| bag size (MCAP, rgb8 camera images) | {rec['bag_bytes'] / 1e6:.1f} MB, "
        f"{rec['bytes_per_episode'] / 1e6:.2f} MB per episode |",
        f"| lost messages: recorded states without a recorded answer / answers to unrecorded states "
        f"| {rec['unanswered_states']} / {rec['answers_to_unrecorded_states']} "
        f"({rec['states']} states, {rec['actions']} actions recorded) |",
        f"| bag2data | {conv['episodes']} episodes, {conv['steps']} steps, {conv['dropped_failed']} failed and "
        f"{conv['dropped_incomplete']} incomplete dropped, {conv['seconds']:.1f} s |",
        f"| train on the converted bag (bundled recipe, {r['train']['epochs']} epochs) | "
        f"{r['train']['seconds'] / 60:.1f} min |",
        f"| success, policy trained on recorded bags (seed {r['from_bags'].get('seed', VALIDATION_SEED)}) | "
        f"{success(r['from_bags'])} |",
        f"| success, policy trained on direct demos (bundled checkpoint, same layouts) | {success(r['direct'])} |",
    ])


if __name__ == "__main__":
    main()
