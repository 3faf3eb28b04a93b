"""The state of a training run: what a checkpoint holds, how a run is built, saved and restored.

A run is the model, its EMA, the optimizer, the schedule, two seeded generators (data order; t and
eps) and the global RNG (weight init, dropout). `to_checkpoint` writes all of it in the format of
checkpoint.py; `restore` puts it back, so that N steps in one go equal N/2 + resume + N/2 bit for bit
(one process; under torchrun the other ranks restart their streams, see `restore`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from ..model.unet import OPTIONAL as UNET_OPTIONAL, UNet, UNetConfig
from ..process.schedules import Schedule
from ..utils.version import __version__
from .checkpoint import (FORMAT, FORMAT_VERSION, CheckpointError, check_resumable, load_checkpoint,
                         load_weights)
from .config import RUN_LENGTH, SPEED, TrainConfig, make_schedule
from .distributed import World, wrap


@dataclass
class RunState:
    """Everything a checkpoint holds, plus the bookkeeping of the running loop."""

    config: TrainConfig
    model: UNet
    net: torch.nn.Module            # what the loss calls: model, or its DDP / compiled wrapper
    ema: UNet
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    order: torch.Generator          # data order
    noise: torch.Generator          # t and eps
    data: dict                      # name, split, shape, levels of the training set
    seed: int
    out: Path | None
    world: World
    step: int = 0
    saved_step: int = -1
    elapsed: float = 0.0            # seconds of earlier sessions of this run
    history: list = field(default_factory=list)
    pending: list = field(default_factory=list)      # loss tensors not yet read back

    def to_checkpoint(self, seconds: float) -> dict:
        """The checkpoint dict (format: checkpoint.py) after `seconds` of this session."""
        device = self.order.device
        rng = {"device": device.type, "data_order": self.order.get_state(), "noise": self.noise.get_state(),
               "torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
               "world_size": self.world.size}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
                "unet_config": self.model.config.to_dict(), "train_config": self.config.to_dict(),
                "schedule": {"name": self.schedule.name, "T": self.schedule.T, "betas": self.schedule.betas},
                "data": dict(self.data), "ema": self.ema.state_dict(), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step, "seed": self.seed, "rng": rng,
                "history": {"loss": torch.tensor(self.history, dtype=torch.float32)},
                "elapsed_seconds": self.elapsed + seconds}


def new_run(config: TrainConfig, model_config: UNetConfig, data: dict, device: torch.device, seed: int,
            out, world: World) -> RunState:
    """A fresh run: weights initialised from `seed` (call inside torch.random.fork_rng)."""
    torch.random.default_generator.manual_seed(seed)       # weight init and dropout
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    model = UNet(model_config).to(device)                   # initialised on the CPU: the same on every rank
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    fused = device.type == "cuda"              # one kernel on CUDA; multi-tensor ops elsewhere
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=fused, foreach=not fused)
    order = torch.Generator(device).manual_seed(rank_seed(seed, world.rank))
    noise = torch.Generator(device).manual_seed(rank_seed(seed ^ 0x5DEECE66D, world.rank))
    net = wrap(model, world, device)           # DDP: gradients averaged over the ranks
    net = torch.compile(net) if config.compile else net
    if world.distributed:                      # dropout: a stream of its own on each rank
        torch.random.default_generator.manual_seed(rank_seed(seed, world.rank, 1))
    return RunState(config, model, net, ema, optimizer, make_schedule(config), order, noise, data, seed,
                    None if out is None else Path(out), world)


def resumable_checkpoint(out, config: TrainConfig, model_config: UNetConfig, data: dict,
                         device: torch.device) -> dict:
    """The checkpoint at `out`, checked to fit these settings (only RUN_LENGTH and SPEED may differ)."""
    if out is None:
        raise ValueError("resume=True needs out=, the checkpoint to continue from")
    ckpt = _with_new_fields(load_checkpoint(out))
    check_resumable(ckpt, out, config.to_dict(), model_config.to_dict(), data, device.type,
                    ignore=RUN_LENGTH + SPEED)
    return ckpt


def _with_new_fields(ckpt: dict) -> dict:
    """ckpt with the config fields that older checkpoints lack filled in with the values they meant
    (num_classes = 0, conditional = False, ...), so that a run saved before they existed resumes."""
    ckpt = dict(ckpt)
    if isinstance(ckpt.get("unet_config"), dict):
        ckpt["unet_config"] = {**UNET_OPTIONAL, **ckpt["unet_config"]}
    if isinstance(ckpt.get("train_config"), dict):
        defaults = {f.name: f.default for f in fields(TrainConfig)}
        ckpt["train_config"] = {**defaults, **ckpt["train_config"]}
    return ckpt


def restore(run: RunState, ckpt: dict) -> None:
    """Put a checkpoint's weights, optimizer, step, history and random state back into `run`."""
    if not torch.equal(ckpt["schedule"]["betas"], run.schedule.betas):
        raise CheckpointError(f"{run.out}: its stored betas differ from the {run.config.schedule} schedule")
    load_weights(run.model, ckpt["model"], "model", run.out)
    load_weights(run.ema, ckpt["ema"], "EMA", run.out)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.step = run.saved_step = int(ckpt["step"])
    run.history = torch.as_tensor(ckpt["history"]["loss"]).tolist()
    run.elapsed = float(ckpt.get("elapsed_seconds", 0.0))
    _restore_rng(run, ckpt["rng"])


def _restore_rng(run: RunState, rng: dict) -> None:
    """The random state of a checkpoint (written by rank 0): exact for one process; under torchrun the
    other ranks start fresh streams seeded by (seed, rank, step), so a resumed multi-process run is
    an equally valid run, not a bitwise continuation."""
    if run.world.rank > 0:
        for i, g in enumerate((run.order, run.noise, torch.random.default_generator)):
            g.manual_seed(rank_seed(run.seed + i, run.world.rank, run.step))
        return
    device = run.order.device
    run.order.set_state(rng["data_order"])
    run.noise.set_state(rng["noise"])
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process `rank` (seed itself for rank 0 at step 0): distinct batches and noise per rank."""
    if rank == 0 and step == 0:
        return seed
    return (seed + rank * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9) % 2**64
