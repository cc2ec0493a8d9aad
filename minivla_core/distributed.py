"""Training on several processes or machines: PyTorch's DistributedDataParallel, started by `torchrun`.

    torchrun --standalone --nproc-per-node 2 minivla.py train --config config/mt50.yaml      # two processes here
    torchrun --nnodes 2 --node-rank 0 --master-addr HOST ... minivla.py train ...            # two machines

torchrun starts one copy of `minivla train` per process and tells each its rank and the world's size
(environment variables RANK, WORLD_SIZE, LOCAL_RANK). Every process holds the whole dataset and the same
model. Each optimisation step takes one global batch of train.batch_size samples, drawn exactly as a single
process draws it (the same shuffle, augmentation and diffusion noise); each process computes the loss of
its own share of the batch, and DistributedDataParallel averages the gradients, so every process applies
the same update: the result equals one process with the same global batch (test/test_distributed.py
checks it). Only rank 0 validates and writes checkpoints. The backend is gloo on CPUs and nccl on GPUs.

Without torchrun (WORLD_SIZE unset) the world is this process alone, and nothing here changes training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from minivla_core.errors import ConfigError


@dataclass
class World:
    rank: int  # this process, 0 .. size - 1
    size: int  # processes taking part
    device: torch.device  # where this process trains

    @property
    def main(self) -> bool:
        """The process that validates, writes checkpoints and prints."""
        return self.rank == 0

    def share(self, batch: int) -> slice:
        """This process's part of a global batch of `batch` samples (equal parts, in order)."""
        part = batch // self.size
        return slice(self.rank * part, (self.rank + 1) * part)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module`, with its gradients averaged over the world when there is more than one process."""
        if self.size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def mean(self, value: float) -> float:
        """The mean of `value` over the world's processes (a loss each measured on its own share)."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.item() / self.size

    def close(self) -> None:
        """Leave the world together: a process that tore its connections down while rank 0 was still writing the
        last checkpoint was aborted by gloo."""
        if self.size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def join_world(device: str, batch_size: int) -> World:
    """This process's place in the world torchrun started (or a world of one), on `device` ("cpu" or "cuda")."""
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"train.device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device 'cuda' asked for, but torch sees no CUDA GPU")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, torch.device(device))
    if batch_size % size:
        raise ConfigError(f"train.batch_size {batch_size} is the global batch: it must split evenly over the "
                          f"{size} processes torchrun started")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    where = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    return World(dist.get_rank(), dist.get_world_size(), where)
