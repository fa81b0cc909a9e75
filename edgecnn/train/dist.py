"""Distributed data-parallel helpers: who am I, and the few collectives training needs.

``torchrun`` (or ``edgecnn train --nproc N``, which launches it) sets
``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without them everything here is a
no-op and training runs as a single process. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def relaunch(nproc: int, argv: list[str]) -> int:
    """Run ``edgecnn ARGV`` as ``nproc`` data-parallel processes under torchrun on this machine.

    ``argv`` is the command line after ``edgecnn`` (e.g. ``["train", recipe, ...]``),
    passed as a list: nothing goes through a shell. Returns torchrun's exit code.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "edgecnn", *argv]
    return subprocess.run(cmd).returncode


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(use_cuda: bool) -> Dist:
    """Join the process group torchrun prepared (a no-op for a single process)."""
    if not launched_by_torchrun():
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def all_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum ``t`` over ranks, in place (gloo reduces CPU tensors, NCCL GPU ones)."""
    if d.active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_min(value: int, d: Dist, device: torch.device) -> int:
    if not d.active:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def shutdown(d: Dist) -> None:
    """Collect what still holds the group (no barrier: a rank that failed alone must not
    wait here for ranks that are still inside a collective), then destroy it."""
    if d.active and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
