"""Training throughput on this CPU against its FLOP floor: where a training step's time goes, and what changes it.
Prints a table and writes bench/results/train_throughput.{md,json} with the date, the commit and the machine.

    .venv/bin/python bench/bench_train.py                          # the MT50 recipe (config/mt50.yaml), 2 threads
    .venv/bin/python bench/bench_train.py --image-size 128 --variants baseline channels_last

The step measured is train.py's own (train_one_epoch: batch_inputs, the diffusion noise for the global batch,
compute_loss, backward, gradient clipping, AdamW, the EMA update) on a dataset of random images held in memory
as training holds them. The floor is what the step's arithmetic would take at this machine's own float32 matrix
multiplication speed (a large sgemm on the same threads): FLOPs per sample (forward and backward, counted by
torch.utils.flop_counter) / peak FLOP/s. Columns: samples/s (median of --repeats timed runs of --steps steps,
with the range), % of floor, ms per step. The parts (data, optimiser + EMA) are timed alone, per step. Run it on
a quiet machine: the table is only as good as the cores it got.
"""

from __future__ import annotations

import argparse
import os
import copy
import datetime
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, write_results  # noqa: E402
from minivla_core.config import Config, read_config_file  # noqa: E402
from minivla_core.data.dataset import Episode  # noqa: E402
from minivla_core.distributed import World  # noqa: E402
from minivla_core.model.policy import VLAPolicy  # noqa: E402
from minivla_core.train import (  # noqa: E402
    InstructionTable, StepDataset, TrainingLoss, batch_inputs, make_optimizer, train_one_epoch, update_ema)

VARIANTS = ("baseline", "batch_64", "batch_256", "channels_last", "compile")
INSTRUCTIONS = [f"task number {i} of the suite" for i in range(50)]


def synthetic_data(config: Config, episodes: int = 40, steps: int = 80):
    """A StepDataset of random uint8 images and random states/actions, shaped like the recipe's."""
    rng = np.random.default_rng(0)
    size = config.env.image_size
    made = [Episode(rng.integers(0, 256, (steps, 1, size, size, 3), dtype=np.uint8),
                    rng.standard_normal((steps, 4)).astype(np.float32),
                    rng.uniform(-1, 1, (steps, 4)).astype(np.float32), f"task-{i % 50}", INSTRUCTIONS[i % 50])
            for i in range(episodes)]
    return StepDataset(made, config.model.horizon, {t: i for i, t in enumerate(INSTRUCTIONS)},
                       {f"task-{i}": i for i in range(50)})


def make_policy(config: Config, data: StepDataset) -> tuple[VLAPolicy, InstructionTable]:
    vocab = ["<pad>", "<unk>"] + sorted({w for t in INSTRUCTIONS for w in t.split()})
    policy = VLAPolicy(config.model, vocab, 4, 4, config.env.image_size, cameras=1)
    policy.state_normalizer.fit(data.states)
    policy.action_normalizer.fit(data.chunks)
    return policy, InstructionTable(policy, INSTRUCTIONS, list(range(50)))


def flops_per_sample(config: Config, data: StepDataset) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    policy, text = make_policy(config, data)
    batch = batch_inputs(data, torch.arange(64), text, "cpu")
    with FlopCounterMode(display=False) as counter:
        loss = policy.compute_loss(batch.images, batch.states, batch.tokens, batch.lengths, batch.chunks,
                                   config.train.noise_samples_per_obs)
        loss.backward()
    return counter.get_total_flops() / 64


def peak_flops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


class Timeout(Exception):
    pass


def measure(config: Config, data: StepDataset, variant: str, steps: int, repeats: int) -> dict:
    """samples/s of train_one_epoch for one variant: a list of `repeats` timings of `steps` steps each."""
    tc = config.train
    tc.batch_size = {"batch_64": 64, "batch_256": 256}.get(variant, 128)
    policy, text = make_policy(config, data)
    ema = copy.deepcopy(policy).requires_grad_(False)
    model = TrainingLoss(policy)
    row = {"variant": variant, "batch_size": tc.batch_size}
    if variant == "channels_last":
        policy.to(memory_format=torch.channels_last)
    if variant == "compile":
        model = torch.compile(model)
    optimizer, scheduler = make_optimizer(policy, tc, total_steps=10_000)
    world, generator, bar = World(0, 1, torch.device("cpu")), torch.Generator().manual_seed(0), tqdm(disable=True)

    def run(count: int) -> float:
        started = time.perf_counter()
        train_one_epoch(model, policy, ema, optimizer, scheduler, data, text, tc, world, generator, 0, count, bar)
        return time.perf_counter() - started

    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Timeout()))
    signal.alarm(300)  # compiling may take minutes on two cores; more than five and the row says so
    try:
        row["warmup_seconds"] = run(3)
    except Timeout:
        return {**row, "error": "no result within 300 s (compiling)"}
    except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a row that says why
        return {**row, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    finally:
        signal.alarm(0)
    rates = [steps * tc.batch_size / run(steps) for _ in range(repeats)]
    return {**row, "samples_per_second": statistics.median(rates), "range": [min(rates), max(rates)],
            "ms_per_step": 1000 * tc.batch_size / statistics.median(rates)}


def measure_parts(config: Config, data: StepDataset, steps: int) -> dict:
    """ms per step of the data part (batch_inputs) and of the optimiser + EMA part, each alone, at batch 128."""
    policy, text = make_policy(config, data)
    ema = copy.deepcopy(policy).requires_grad_(False)
    optimizer, _ = make_optimizer(policy, config.train, total_steps=10_000)
    for parameter in policy.parameters():
        parameter.grad = torch.zeros_like(parameter)
    generator, order = torch.Generator().manual_seed(0), torch.randperm(len(data))
    batch_inputs(data, order[:128], text, "cpu", 0, generator)  # warm-up: first calls allocate
    optimizer.step()
    started = time.perf_counter()
    for step in range(steps):
        batch_inputs(data, order[step * 128:(step + 1) * 128], text, "cpu", 0, generator)
    data_ms = 1000 * (time.perf_counter() - started) / steps
    started = time.perf_counter()
    for step in range(steps):
        optimizer.step()
        update_ema(ema, policy, 0.995, step)
    return {"data_ms": data_ms, "optimizer_ema_ms": 1000 * (time.perf_counter() - started) / steps}


def render_table(results: dict) -> str:
    floor = results["floor_samples_per_second"]
    lines = [f"# Training throughput against the FLOP floor, {results['date']}", "",
             f"Machine: {results['machine']}  ",
             f"Commit: {results['commit']}; command: `{results['command']}`; 1-minute load average "
             f"{results['load_before']:.1f} before, {results['load_after']:.1f} after", "",
             f"Recipe: {results['recipe']}; {results['threads']} threads. One sample costs "
             f"{results['flops_per_sample'] / 1e6:.1f} MFLOP (forward and backward); this machine's float32 sgemm "
             f"runs at {results['peak_gflops']:.1f} GFLOP/s, so the floor is **{floor:.0f} samples/s**.", "",
             "| variant | batch | samples/s (range) | % of floor | ms/step |", "| --- | --- | --- | --- | --- |"]
    for row in results["rows"]:
        if "error" in row:
            lines.append(f"| {row['variant']} | {row['batch_size']} | {row['error']} | - | - |")
            continue
        low, high = row["range"]
        lines.append(f"| {row['variant']} | {row['batch_size']} | {row['samples_per_second']:.0f} "
                     f"({low:.0f}-{high:.0f}) | {100 * row['samples_per_second'] / floor:.0f}% | "
                     f"{row['ms_per_step']:.1f} |")
    parts = results["parts"]
    lines += ["", f"Parts of a batch-128 step, each timed alone: data (batch_inputs: indexing, uint8 to float) "
              f"{parts['data_ms']:.1f} ms; AdamW + EMA {parts['optimizer_ema_ms']:.1f} ms."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config/mt50.yaml"), help="the recipe (model and train)")
    parser.add_argument("--image-size", type=int, default=0, help="instead of the recipe's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", default=str(ROOT / "bench/results/train_throughput"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = Config.from_dict(read_config_file(args.config))
    if args.image_size:
        config.env.image_size = args.image_size
    data = synthetic_data(config)
    flops, peak = flops_per_sample(config, data), peak_flops()
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
               "load_before": os.getloadavg()[0],
               "command": "bench/bench_train.py " + " ".join(sys.argv[1:]), "threads": args.threads,
               "recipe": f"{Path(args.config).name}, {config.env.image_size} px, text_film {config.model.text_film}, "
                         f"{config.train.noise_samples_per_obs} noise draws per observation",
               "flops_per_sample": flops, "peak_gflops": peak / 1e9, "floor_samples_per_second": peak / flops,
               "rows": [], "parts": measure_parts(config, data, args.steps)}
    for variant in args.variants:
        results["rows"].append(measure(config, data, variant, args.steps, args.repeats))
        print(results["rows"][-1], flush=True)
    results["load_after"] = os.getloadavg()[0]  # the 1-minute load average: what else wanted the cores
    write_results(results, render_table(results), args.out)


if __name__ == "__main__":
    main()
