"""Training throughput on this CPU (or a CUDA GPU) against its FLOP floor: where a training step's time goes, and
what changes it. Prints a table and writes bench/results/train_throughput.{md,json} (train_throughput_cuda with
--device cuda) with the date, the commit and the machine.

    .venv/bin/python bench/bench_train.py                   # the MT50 recipe (config/mt50.yaml: 96 px), 2 threads
    .venv/bin/python bench/bench_train.py --steps 3 --warmup 1 --image-size 32 --out /tmp/train_throughput  # a check
    python3 bench/bench_train.py --device cuda              # on a GPU: policy and step there, as `train --device cuda`

A step is train.py's own (train_one_epoch: batch_inputs, the diffusion levels and noise, compute_loss, backward,
gradient clipping, AdamW, the EMA update, loss.item) on random uint8 images held in memory as training holds them;
50 instructions of 8 words from a vocabulary of 300, state and action dimension 4. The floor is the step's matrix
arithmetic at this machine's own float32 speed on the same threads (the best of a few 2048x2048 sgemms; on cuda
the GPU's, the best of a few 8192x8192 float32 products at torch's float32 matmul precision, which training runs at
too): peak FLOP/s / FLOPs per sample (forward and backward, counted by torch.utils.flop_counter).

Rows: baseline (batch 128, as train.py runs today), batch_256, batch_64, channels_last (the policy and the image
encoder's input in torch.channels_last), compile (torch.compile of TrainingLoss, the module train.py calls; one that
fails, or whose warm-up takes over 180 s, is a row saying why), and the parts of a batch-128 step, each alone:
data_only (batch_inputs), forward_backward_only (compute_loss + backward), optimizer_only (clipping, AdamW, the
schedule, the EMA update). Columns: samples/s = batch / median step time (range: the slowest and the fastest timed
step); % of floor = samples/s / floor ("-" for the parts without matrix products); ms/step = median step time; the
--warmup steps before are not timed. Run it on a quiet machine: with --threads 2 and another busy process on a 2-core
machine, a step takes many times longer (the threads wait for each other), so the load average is recorded.

On cuda the data stays in CPU memory and each batch is copied to the GPU, as train.py does; every clock reading
waits for the GPU's queued work first (torch.cuda.synchronize), and --threads is not applied (torch's default).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
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
from minivla_core.model.tokenizer import WordTokenizer  # noqa: E402
from minivla_core.train import (  # noqa: E402
    InstructionTable, StepDataset, TrainingLoss, batch_inputs, make_optimizer, train_one_epoch, update_ema)

STEP_VARIANTS = ("baseline", "batch_256", "batch_64", "channels_last", "compile")
PARTS = ("data_only", "forward_backward_only", "optimizer_only")
WORDS = [f"word{i}" for i in range(300)]
INSTRUCTIONS = [" ".join(np.random.default_rng(i).choice(WORDS, 8)) for i in range(50)]
COMPILE_LIMIT_S = 180  # compiling takes minutes on two cores; longer than this and the row says so


def synthetic_data(config: Config, episodes: int = 40, steps: int = 80) -> StepDataset:
    """Random uint8 images and random states/actions, shaped like the recipe's (3,200 samples: 12 steps of 256)."""
    rng, size = np.random.default_rng(0), config.env.image_size
    made = [Episode(rng.integers(0, 256, (steps, 1, size, size, 3), dtype=np.uint8),
                    rng.standard_normal((steps, 4)).astype(np.float32),
                    rng.uniform(-1, 1, (steps, 4)).astype(np.float32), f"task-{i % 50}", INSTRUCTIONS[i % 50])
            for i in range(episodes)]
    return StepDataset(made, config.model.horizon, {t: i for i, t in enumerate(INSTRUCTIONS)},
                       {f"task-{i}": i for i in range(50)})


def make_policy(config: Config, data: StepDataset) -> tuple[VLAPolicy, InstructionTable]:
    vocab = WordTokenizer.from_texts(WORDS, config.model.stem_words).vocab
    policy = VLAPolicy(config.model, vocab, 4, 4, config.env.image_size, cameras=1)
    policy.state_normalizer.fit(data.states)
    policy.action_normalizer.fit(data.chunks)
    return policy, InstructionTable(policy, INSTRUCTIONS, list(range(50)))


def make_policy_on(config: Config, data: StepDataset, device: torch.device) -> tuple[VLAPolicy, InstructionTable]:
    """make_policy, moved to `device` as train.py moves it (the instruction table stays in CPU memory there too)."""
    policy, text = make_policy(config, data)
    return policy.to(device), text


def flops_per_sample(config: Config, data: StepDataset, batch_size: int = 64) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    policy, text = make_policy(config, data)
    batch = batch_inputs(data, torch.arange(batch_size), text, "cpu")
    with FlopCounterMode(display=False) as counter:
        policy.compute_loss(batch.images, batch.states, batch.tokens, batch.lengths, batch.chunks,
                            config.train.noise_samples_per_obs).backward()
    return counter.get_total_flops() / batch_size


def peak_flops(device: torch.device, repeats: int = 5) -> float:
    """float32 FLOP/s of the best of `repeats` square matrix products on `device`, after one unmeasured (a GPU
    needs larger matrices than a CPU to reach its speed)."""
    size = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    return 2 * size**3 / min(seconds_of(lambda: a @ b, device) for _ in range(repeats))


def now(device: torch.device) -> float:
    """The clock, once the work queued on `device` is done (a GPU runs it after the Python call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def seconds_of(work, device: torch.device) -> float:
    started = now(device)
    work()
    return now(device) - started


class CompileTimeout(BaseException):  # not an Exception: torch's own error handling must not swallow it
    pass


class StepClock(tqdm):
    """train_one_epoch's progress bar, silent, noting the time at each update (once, at the end of each step)."""

    def __init__(self, device: torch.device):
        super().__init__(disable=True)
        self.device = device
        self.times = [now(device)]

    def update(self, n: int = 1) -> None:
        self.times.append(now(self.device))


def summary(variant: str, batch_size: int, seconds: list[float]) -> dict:
    rates = [batch_size / s for s in seconds]
    return {"variant": variant, "batch_size": batch_size, "samples_per_second": batch_size / statistics.median(seconds),
            "range": [min(rates), max(rates)], "ms_per_step": 1000 * statistics.median(seconds),
            "step_ms": [1000 * s for s in seconds]}


def measure_step(config: Config, data: StepDataset, variant: str, warmup: int, steps: int,
                 device: torch.device) -> dict:
    """train_one_epoch's steps for one variant, each timed; the first `warmup` are dropped."""
    tc = copy.deepcopy(config.train)
    tc.batch_size = {"batch_64": 64, "batch_256": 256}.get(variant, 128)
    policy, text = make_policy_on(config, data, device)
    ema = copy.deepcopy(policy).requires_grad_(False)
    model = TrainingLoss(policy)
    if variant == "channels_last":  # a convolution runs channels-last when its input or its weight is
        policy.to(memory_format=torch.channels_last)
        policy.image_encoder.register_forward_pre_hook(
            lambda _module, inputs: tuple(x.contiguous(memory_format=torch.channels_last) for x in inputs))
    if variant == "compile":
        model = torch.compile(model)
    optimizer, scheduler = make_optimizer(policy, tc, total_steps=10_000)
    world, generator, clock = World(0, 1, device), torch.Generator().manual_seed(0), StepClock(device)
    per_epoch = len(data) // tc.batch_size  # train_one_epoch draws each sample once: more steps take more epochs

    def run(count: int) -> None:
        for epoch, start in enumerate(range(0, count, per_epoch)):
            train_one_epoch(model, policy, ema, optimizer, scheduler, data, text, tc, world, generator, epoch,
                            min(per_epoch, count - start), clock)

    row = {"variant": variant, "batch_size": tc.batch_size}
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(CompileTimeout()))
    signal.alarm(COMPILE_LIMIT_S)
    try:
        run(warmup)  # compile's compiling happens here, in the first step
    except CompileTimeout:
        return {**row, "error": f"warm-up not done within {COMPILE_LIMIT_S} s (compiling)"}
    except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a row that says why
        return {**row, "error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"}
    finally:
        signal.alarm(0)
    run(steps)
    return summary(variant, tc.batch_size, np.diff(clock.times[warmup:]).tolist())


def measure_part(config: Config, data: StepDataset, part: str, warmup: int, steps: int,
                 device: torch.device) -> dict:
    """One part of a batch-128 step alone, as train_one_epoch runs it, `steps` times after `warmup`."""
    tc, batch_size = config.train, 128
    policy, text = make_policy_on(config, data, device)
    ema = copy.deepcopy(policy).requires_grad_(False)
    optimizer, scheduler = make_optimizer(policy, tc, total_steps=10_000)
    generator, order = torch.Generator().manual_seed(0), torch.randperm(len(data))

    def load(step: int):
        start = step * batch_size % (len(data) - batch_size)
        return batch_inputs(data, order[start: start + batch_size], text, device, tc.image_shift, generator,
                            tc.word_dropout, tc.foreign_instructions)

    batch = load(0)

    def forward_backward(_step: int) -> None:
        policy.zero_grad(set_to_none=True)
        policy.compute_loss(batch.images, batch.states, batch.tokens, batch.lengths, batch.chunks,
                            tc.noise_samples_per_obs).backward()

    def optimize(step: int) -> None:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        update_ema(ema, policy, tc.ema_decay, step)

    forward_backward(0)  # the optimiser needs gradients
    work = {"data_only": load, "forward_backward_only": forward_backward, "optimizer_only": optimize}
    seconds = [seconds_of(lambda: work[part](step), device) for step in range(warmup + steps)]
    return summary(part, batch_size, seconds[warmup:])


def where(results: dict) -> str:
    """Where the steps ran, for the table (results of CPU runs from before --device have no "device")."""
    if results.get("device", "cpu") == "cpu":
        return f"{results['threads']} threads"
    return f"on the GPU ({results['gpu']}), torch's default {results['threads']} CPU threads for the host's part"


def render_table(results: dict) -> str:
    floor = results["floor_samples_per_second"]
    floor_source = results.get("floor_source", "this machine's float32 sgemm")  # results from before --device
    lines = [f"# Training throughput against the FLOP floor, {results['date']}", "",
             f"Machine: {results['machine']}  ",
             f"Commit: {results['commit']}; command: `{results['command']}`; 1-minute load average "
             f"{results['load_before']:.1f} before, {results['load_after']:.1f} after", "",
             f"Recipe: {results['recipe']}; {where(results)}. One sample costs "
             f"{results['flops_per_sample'] / 1e6:.1f} MFLOP (forward and backward); {floor_source} "
             f"runs at {results['peak_gflops']:.1f} GFLOP/s, so the floor is **{floor:.0f} samples/s**.", "",
             "| variant | batch | samples/s (range) | % of floor | ms/step |", "| --- | --- | --- | --- | --- |"]
    for row in results["rows"]:
        if "error" in row:
            lines.append(f"| {row['variant']} | {row['batch_size']} | {row['error']} | - | - |")
            continue
        (low, high), rate = row["range"], row["samples_per_second"]
        share = "-" if row["variant"] in ("data_only", "optimizer_only") else f"{100 * rate / floor:.0f}%"  # no FLOPs
        lines.append(f"| {row['variant']} | {row['batch_size']} | {rate:.0f} ({low:.0f}-{high:.0f}) | {share} "
                     f"| {row['ms_per_step']:.1f} |")
    ms = {row["variant"]: row["ms_per_step"] for row in results["rows"] if "error" not in row}
    if all(name in ms for name in ("baseline", *PARTS)):
        rest = ms["baseline"] - sum(ms[part] for part in PARTS)
        lines += ["", f"A baseline step of {ms['baseline']:.1f} ms: " + ", ".join(
            f"{part} {ms[part]:.1f} ms ({100 * ms[part] / ms['baseline']:.0f}%)" for part in PARTS) +
            f", the rest (noise draws, loss.item, Python) {rest:.1f} ms."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config/mt50.yaml"), help="the recipe (env, model, train)")
    parser.add_argument("--image-size", type=int, default=0, help="instead of the recipe's (96 in mt50.yaml)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the policy and the step run (cuda: the first GPU, as `train --device cuda`)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (--device cpu only)")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before the timed ones")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--variants", nargs="+", default=[*STEP_VARIANTS, *PARTS], choices=[*STEP_VARIANTS, *PARTS])
    parser.add_argument("--out", default="", help="results path without .md/.json (default: "
                        "bench/results/train_throughput, or train_throughput_cuda with --device cuda)")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be 1 or more")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"error: --device cuda asked for, but torch {torch.__version__} sees no CUDA GPU here")
    device = torch.device(args.device)
    out = args.out or str(ROOT / ("bench/results/train_throughput" + ("_cuda" if device.type == "cuda" else "")))

    if device.type == "cpu":  # on a GPU the host only feeds it: torch's default threads, as `train` leaves them
        torch.set_num_threads(args.threads)
    config = Config.from_dict(read_config_file(args.config))
    if args.image_size:
        config.env.image_size = args.image_size
    data = synthetic_data(config)
    flops, peak = flops_per_sample(config, data), peak_flops(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    if gpu:
        where_run = f"{gpu}, CUDA {torch.version.cuda}; host: {machine()}"
        floor_source = (f"this GPU's ({gpu}) float32 matmul (8192x8192, precision "
                        f"'{torch.get_float32_matmul_precision()}')")
    else:
        where_run, floor_source = machine(), "this machine's float32 sgemm"
    results = {"date": datetime.date.today().isoformat(), "machine": where_run, "commit": git_commit(),
               "load_before": os.getloadavg()[0], "device": args.device, "gpu": gpu,
               "command": "bench/bench_train.py " + " ".join(sys.argv[1:]), "threads": torch.get_num_threads(),
               "recipe": f"{Path(args.config).name}, {config.env.image_size} px, text_film {config.model.text_film}, "
                         f"{config.train.noise_samples_per_obs} noise draws per observation",
               "flops_per_sample": flops, "peak_gflops": peak / 1e9, "floor_source": floor_source,
               "floor_samples_per_second": peak / flops, "rows": []}
    for variant in args.variants:
        measure = measure_step if variant in STEP_VARIANTS else measure_part
        row = measure(config, data, variant, args.warmup, args.steps, device)
        results["rows"].append(row)
        print(f"{variant}: {row.get('error') or '%.1f ms/step' % row['ms_per_step']}", flush=True)
    results["load_after"] = os.getloadavg()[0]  # the 1-minute load average: what else wanted the cores
    write_results(results, render_table(results), out)


if __name__ == "__main__":
    main()
