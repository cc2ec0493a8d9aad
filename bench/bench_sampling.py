"""Benchmark: how long one action chunk takes to sample on one CPU thread, against the floor its arithmetic sets.

    .venv/bin/python bench/bench_sampling.py            # bench/results/sampling.{md,json}

For each bundled checkpoint: the FLOPs of one sampling call (torch's FlopCounterMode: convolutions and matrix
products, which is nearly all of the arithmetic), this CPU's single-thread matrix-product speed (a 512 x 512
float32 product, the best of many), their quotient as the floor, and the measured time of a call:
- "step by step": the DDIM loop as first written, the whole denoising network (time embedding, FiLM on the
  conditioning and the time, blocks) called as modules at every step (kept here as the reference);
- "as shipped": PolicyRunner.sample_chunk, what `minivla eval` and the policy node run (the instruction encoded
  once, FiLM's share of the conditioning and of each noise level computed once per chunk, functional calls), the
  sampler run by ONNX Runtime (the default engine, minivla_core/model/engines.py);
- "TorchScript": the same runner with engine "torch" (the sampler traced by torch.jit), for comparison.
Both sample from the same noise and must agree; the table says by how much. Calls use a real camera image.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_core import git_commit, machine, write_results  # noqa: E402
from minivla_core.checkpoint import load_policy  # noqa: E402
from minivla_core.config import EnvConfig  # noqa: E402
from minivla_core.envs import make_env, sim_instruction  # noqa: E402
from minivla_core.evaluate import env_config_for  # noqa: E402
from minivla_core.model.diffusion import ddim_timesteps  # noqa: E402
from minivla_core.model.policy import ChunkSampler, PolicyRunner, image_to_tensor  # noqa: E402


def matmul_gflops(size: int = 512, repeats: int = 200) -> float:
    """This thread's best float32 matrix-product speed: the arithmetic ceiling the floor is computed with."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


@torch.no_grad()
def step_by_step(runner: PolicyRunner, images: np.ndarray, state: np.ndarray, generator: torch.Generator):
    """The reference: the text encoded with every chunk, every denoising step through the whole network."""
    policy, head = runner.policy, runner.policy.head
    cond = policy.encode(image_to_tensor(images), torch.from_numpy(state)[None], runner.tokens, runner.lengths)
    x = torch.randn((1, head.horizon, head.action_dim), generator=generator)
    levels = ddim_timesteps(head.train_steps, runner.inference_steps)
    for i, t in enumerate(levels):
        ab = float(head.alpha_bar[t])
        ab_next = float(head.alpha_bar[levels[i + 1]]) if i + 1 < len(levels) else 1.0
        p, q = head.x0_coefficients(ab)
        x0 = (p * x + q * head.denoiser(x, torch.full((1,), t), cond)).clamp(-1, 1)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        x = math.sqrt(ab_next) * x0 + math.sqrt(1 - ab_next) * eps
    return policy.action_normalizer.unnormalize(x.clamp(-1, 1))[0].numpy()


def timed(call, repeats: int) -> list[float]:
    for _ in range(5):
        call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def measure(checkpoint: Path, repeats: int, gflops: float) -> dict:
    policy, payload = load_policy(checkpoint)
    env = make_env(env_config_for(payload["env"], EnvConfig(seed=1000)))
    obs = env.reset(0)
    env.close()
    runner = PolicyRunner(policy, sim_instruction(env.task))
    # Counted on the plain module: the traced graph that PolicyRunner runs does the same arithmetic, but the counter
    # cannot see inside a frozen TorchScript graph.
    plain = ChunkSampler(policy, runner.inference_steps).eval()
    noise = torch.randn((1, policy.config.horizon, policy.action_dim))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        plain(image_to_tensor(obs.images), torch.from_numpy(obs.state)[None], runner.text_token, noise)
    flops = counter.get_total_flops()
    shipped = timed(lambda: runner.sample_chunk(obs.images, obs.state), repeats)
    scripted = PolicyRunner(policy, sim_instruction(env.task), engine="torch")
    torchscript = timed(lambda: scripted.sample_chunk(obs.images, obs.state), repeats)
    reference = timed(lambda: step_by_step(runner, obs.images, obs.state, torch.Generator().manual_seed(0)), repeats)
    runner.generator.manual_seed(0)
    difference = np.abs(runner.sample_chunk(obs.images, obs.state)
                        - step_by_step(runner, obs.images, obs.state, torch.Generator().manual_seed(0))).max()
    floor_ms = flops / (gflops * 1e9) * 1e3
    return {"checkpoint": str(checkpoint.relative_to(ROOT)), "image_size": payload["env"]["image_size"],
            "image_encoder": policy.config.image_encoder, "inference_steps": runner.inference_steps,
            "mflops": flops / 1e6, "floor_ms": floor_ms,
            "shipped_p50_ms": float(np.percentile(shipped, 50) * 1e3),
            "shipped_p90_ms": float(np.percentile(shipped, 90) * 1e3),
            "reference_p50_ms": float(np.percentile(reference, 50) * 1e3),
            "torchscript_p50_ms": float(np.percentile(torchscript, 50) * 1e3),
            "max_action_difference": float(difference)}


def render_table(r: dict) -> str:
    rows = [f"# Sampling one action chunk, {r['date']}", "", f"Machine: {r['machine']}  ",
            f"Commit: {r['commit']}; 1 CPU thread; this thread's float32 matrix product: {r['gflops']:.1f} GFLOP/s "
            f"(512 x 512, best of 200); load average {r['load_average_1min']:.2f} before measuring", "",
            "| checkpoint | image | DDIM steps | MFLOPs per chunk | floor (FLOPs / GFLOP/s) | step by step p50 | "
            "TorchScript p50 | as shipped (ONNX Runtime) p50 / p90 | shipped / floor | largest action difference |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in r["checkpoints"]:
        rows.append(f"| `{m['checkpoint']}` | {m['image_size']} px, {m['image_encoder']} | {m['inference_steps']} | "
                    f"{m['mflops']:.1f} | {m['floor_ms']:.2f} ms | {m['reference_p50_ms']:.2f} ms | "
                    f"{m['torchscript_p50_ms']:.2f} ms | "
                    f"{m['shipped_p50_ms']:.2f} / {m['shipped_p90_ms']:.2f} ms | "
                    f"{m['shipped_p50_ms'] / m['floor_ms']:.1f}x | {m['max_action_difference']:.1e} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", nargs="+", default=["checkpoints/push_v3.pt", "checkpoints/fetch_push.pt"])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sampling"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = __import__("os").getloadavg()[0]
    gflops = matmul_gflops()
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": git_commit(),
               "gflops": gflops, "load_average_1min": load,
               "checkpoints": [measure(ROOT / c, args.repeats, gflops) for c in args.checkpoints]}
    write_results(results, render_table(results), args.out)


if __name__ == "__main__":
    main()
