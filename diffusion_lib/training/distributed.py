"""Several processes, one model: what train() needs to run under torchrun with DistributedDataParallel.

    torchrun --standalone --nproc_per_node=4 -m diffusion_lib train --data mnist --preset gpu ...

torchrun starts one process per GPU and sets RANK, LOCAL_RANK and WORLD_SIZE; train() then joins
the process group (NCCL on CUDA, gloo on the CPU), each process takes its shard of the data set
(images rank, rank + W, rank + 2W, ...: DistributedSampler's split), draws its own batches and
noise, and DistributedDataParallel averages the gradients, so every process takes the same
optimizer step and holds the same weights and the same EMA. Rank 0 alone writes checkpoints and
shows progress. Without torchrun (WORLD_SIZE unset or 1) nothing here does anything.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank 0..size-1; local_rank picks its GPU."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """The process that writes checkpoints and prints."""
        return self.rank == 0


def world_from_env() -> World:
    """The World that torchrun describes in RANK, WORLD_SIZE, LOCAL_RANK (World() without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size <= 1:
        return World()
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={size} but {', '.join(missing)} unset: start multi-process training "
                         f"with torchrun --nproc_per_node=N -m diffusion_lib train ...")
    return World(int(os.environ["RANK"]), size, int(os.environ["LOCAL_RANK"]))


def process_device(world: World, device: torch.device) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK when training on CUDA; the CPU stays the CPU."""
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(world: World, device: torch.device):
    """Join the process group for the length of a training run (and leave it if we joined it)."""
    joined = world.distributed and not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                                world_size=world.size)
    try:
        yield
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def shard(images: torch.Tensor, world: World) -> torch.Tensor:
    """This process's share of the data set: images rank, rank + W, ... (all of it for one process)."""
    if not world.distributed:
        return images
    if len(images) < world.size:
        raise ValueError(f"{len(images)} images cannot be shared among {world.size} processes")
    return images[world.rank::world.size]


def mean_over_ranks(values: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of `values` over all processes (the values themselves for one process)."""
    if not world.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world.size


def any_rank(flags: list, world: World, device: torch.device) -> list:
    """Each flag, true on every process when it is true on any (one all-reduce): so that all processes
    stop at the same step (time budget, Ctrl-C)."""
    if not world.distributed:
        return [bool(f) for f in flags]
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel(model) for several processes (gradients averaged in backward), else model."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # The 1x1 attention convolutions get gradients in another (equivalent) memory layout than DDP's
    # buckets: DDP copies them, and says so once per process. Harmless; keep it off a student's screen.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
