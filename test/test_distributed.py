"""Training on two processes (torchrun, DistributedDataParallel over gloo) equals training on one with the same
global batch: the same losses epoch by epoch and the same weights, up to the order in which floating-point sums
are taken. Real processes, a real dataset, the real `minivla train` command."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minivla_core.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def train(out: Path, dataset: Path, processes: int, seed: int = 0, batch_size: int = 16):
    args = ["train", "--dataset", str(dataset), "--out", str(out), "--image-size", "32", "--epochs", "2",
            "--batch-size", str(batch_size), "--threads", "1", "--seed", str(seed), "--set", "train.warmup_steps=2",
            "--set", "train.val_fraction=0.5", "--set", "model.d_model=32", "--set", "model.denoiser_hidden=64"]
    command = ([str(TORCHRUN), "--standalone", "--nproc-per-node", str(processes), str(REPO / "minivla.py"), *args]
               if processes > 1 else [sys.executable, str(REPO / "minivla.py"), *args])
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}  # loopback only, like the rest of the tests' traffic
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def weights_and_losses(run: Path):
    training = read_checkpoint(run / "last.pt")["training"]
    return training["model"], training["history"]["train_loss"]


@pytest.mark.skipif(not TORCHRUN.exists(), reason=f"torchrun is not installed beside {sys.executable}")
def test_two_processes_train_the_same_policy_as_one(tmp_path, two_episode_dataset):
    for name, processes in (("one", 1), ("two", 2)):
        result = train(tmp_path / name, two_episode_dataset, processes)
        assert result.returncode == 0, result.stderr[-3000:]
    (one, one_losses), (two, two_losses) = weights_and_losses(tmp_path / "one"), weights_and_losses(tmp_path / "two")
    assert two_losses == pytest.approx(one_losses, rel=1e-5)
    largest = max((one[name].float() - two[name].float()).abs().max().item() for name in one)
    assert largest < 1e-3, f"weights differ by up to {largest}"
    # the tolerance is far below what a change of the draws makes: another seed moves the weights a lot
    assert train(tmp_path / "seed1", two_episode_dataset, 1, seed=1).returncode == 0
    other, _ = weights_and_losses(tmp_path / "seed1")
    assert max((one[name].float() - other[name].float()).abs().max().item() for name in one) > 1e-2


def test_a_global_batch_that_does_not_split_evenly_is_refused(tmp_path, two_episode_dataset):
    if not TORCHRUN.exists():
        pytest.skip(f"torchrun is not installed beside {sys.executable}")
    result = train(tmp_path / "odd", two_episode_dataset, 2, batch_size=15)
    assert result.returncode != 0
    assert "train.batch_size 15 is the global batch: it must split evenly over the 2 processes" in result.stderr
    assert not (tmp_path / "odd" / "last.pt").exists()


def test_cuda_asked_for_without_a_gpu_is_a_clear_error(tmp_path, two_episode_dataset):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = subprocess.run([sys.executable, str(REPO / "minivla.py"), "train", "--dataset", str(two_episode_dataset),
                             "--out", str(tmp_path / "gpu"), "--image-size", "32", "--device", "cuda"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "torch sees no CUDA GPU" in result.stderr


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                    reason="torch.compile on CPUs needs a C compiler (cc/gcc), and this machine has none")
def test_a_compiled_training_step_trains_the_same_policy(tmp_path, two_episode_dataset):
    """train.compile (torch.compile of the step, bench/results/train_throughput.md) changes the speed, not what is
    learnt: the losses agree with the plain step's up to floating-point order."""
    losses = {}
    for name, extra in (("plain", []), ("compiled", ["--compile"])):
        result = subprocess.run([sys.executable, str(REPO / "minivla.py"), "train", "--dataset",
                                 str(two_episode_dataset), "--out", str(tmp_path / name), "--image-size", "32",
                                 "--epochs", "1", "--batch-size", "16", "--threads", "1", "--set",
                                 "train.val_fraction=0.5", "--set", "model.d_model=32", "--set",
                                 "model.denoiser_hidden=64", *extra],
                                cwd=REPO, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        losses[name] = weights_and_losses(tmp_path / name)[1]
    assert losses["compiled"] == pytest.approx(losses["plain"], rel=1e-4)
