"""Training eps_theta with L_simple (DDPM Algorithm 1): one code path for every preset and device.

    repeat:  x_0 ~ data,  t ~ Uniform{1..T},  eps ~ N(0, I)
             x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (q_sample, DDPM eq. 4)
             gradient step on || eps - eps_theta(x_t, t) ||^2                   (simple_loss, eq. 14)
DDPM (Ho et al. 2020) Algorithm 1; notebooks/04, sec. 3. AdamW, gradient clipping, LR warmup, an
exponential moving average (EMA) of the weights that is what we sample with (DDPM sec. 4).

All randomness comes from two seeded generators on the training device (data order; t and eps)
and the global RNG inside torch.random.fork_rng (weight init and dropout), so a run is
reproducible and a resumed run continues exactly: N steps in one go equal N/2 + resume + N/2.
"""
from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import (CheckpointError, check_resumable, load_checkpoint, load_weights, make_checkpoint,
                         save_checkpoint)
from .data import ImageSet, load_dataset
from .devices import pick_device
from .distributed import World, any_rank, mean_over_ranks, process_device, process_group, shard, world_from_env, wrap
from .elbo import simple_loss
from .forward import q_sample
from .schedules import Schedule, cosine_schedule, linear_schedule
from .unet import SIZES, UNet, UNetConfig, unet_config_for

RUN_LENGTH = ("steps", "max_seconds", "log_every", "save_every")   # may change on resume
SPEED = ("channels_last", "compile")                                # how, not what: may change too


@dataclass(frozen=True)
class TrainConfig:
    """How to train; presets below (PRESETS["fast"], ["cpu"], ["gpu"]); the defaults are "cpu".

    model_size: "tiny" | "small" | "base", see unet.unet_config_for.  steps: optimizer steps in all.
    lr, weight_decay: AdamW;  warmup_steps: linear LR warmup;  grad_clip: max global grad norm.
    ema_decay: EMA of the weights, min(ema_decay, (1 + step) / (10 + step)) at each step.
    schedule: "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021), with T steps.
    bf16: bf16 autocast on CUDA (ignored elsewhere).  max_seconds: wall-clock budget (None: none).
    log_every: read the loss back to the host every N steps;  save_every: checkpoint every N
    steps (0: at the end only; also on Ctrl-C and when the budget runs out).
    channels_last, compile: speed options that leave the math alone (NHWC activations;
    torch.compile of the U-Net, whose compilation time counts against max_seconds).
    batch_size is per process: under torchrun with W processes a step sees W * batch_size images.
    """

    model_size: str = "tiny"
    steps: int = 5000
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    schedule: str = "linear"
    T: int = 1000
    bf16: bool = True
    max_seconds: float | None = None
    log_every: int = 25
    save_every: int = 500
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        ints = {k: getattr(self, k) for k in ("steps", "batch_size", "T", "log_every")}
        bad = [f"{k}={v!r}" for k, v in ints.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if self.model_size not in SIZES or self.schedule not in SCHEDULES:
            bad.append(f"model_size={self.model_size!r} (one of {sorted(SIZES)}), schedule={self.schedule!r} "
                       f"(one of {sorted(SCHEDULES)})")
        if not (self.lr > 0 and 0 <= self.ema_decay < 1 and min(self.grad_clip, self.warmup_steps,
                                                                 self.save_every, self.weight_decay) >= 0):
            bad.append("lr > 0, 0 <= ema_decay < 1, grad_clip, warmup_steps, save_every, weight_decay >= 0")
        if self.max_seconds is not None and not self.max_seconds > 0:
            bad.append(f"max_seconds > 0 or None, got {self.max_seconds!r}")
        if bad:
            raise ValueError("TrainConfig needs positive integer steps, batch_size, T, log_every and: "
                             + "; ".join(bad))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - known:
            raise ValueError(f"a TrainConfig dict takes the keys {sorted(known)}, got {d!r}")
        return cls(**d)


SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule}
# fast: tests and FAST=1 notebooks, seconds.
# cpu: 8x8 digits on a laptop CPU. The 0.16M-parameter "tiny" U-Net (a sampling step 3.6x cheaper
#   than the 0.92M-parameter one's, benchmarks/README.md), batch 128, lr 4e-3: 5000 steps
#   in ~250 s on 2 cores, DDPM-1000 FD within 1.1x of the real-vs-real floor (README).
# gpu: one GPU, bf16 autocast; MNIST at 28x28 with the "small" U-Net (1.5M parameters, against the
#   diffusers peer's 4M). Not measured on a GPU yet (benchmarks/gpu.sh is the prepared run).
PRESETS = {
    "fast": TrainConfig(model_size="tiny", steps=150, batch_size=32, lr=2e-3, warmup_steps=10,
                        ema_decay=0.99, log_every=10, save_every=0),
    "cpu": TrainConfig(),
    "gpu": TrainConfig(model_size="small", steps=20000, batch_size=512, lr=2e-3, warmup_steps=200,
                       ema_decay=0.9995, log_every=100, save_every=2000),
}


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stopped without saving over the last checkpoint."""


@dataclass
class TrainResult:
    """What train() returns. ema_model (eval mode) is the one to sample with."""

    model: UNet
    ema_model: UNet
    schedule: Schedule
    history: dict          # {"loss": [L_simple at step 1, 2, ...]}
    step: int
    seconds: float
    stopped_by: str        # "steps" or "time"
    checkpoint: Path | None


def make_schedule(config: TrainConfig) -> Schedule:
    """The noise schedule a TrainConfig names, with its T."""
    return SCHEDULES[config.schedule](config.T)


def loss_on_batch(model, x0: torch.Tensor, schedule: Schedule, generator: torch.Generator,
                  autocast: bool = False) -> torch.Tensor:
    """L_simple on one batch (DDPM Algorithm 1, lines 2-5); notebooks/04, sec. 3. x0: (B, C, H, W)."""
    B = x0.shape[0]
    t = torch.randint(1, schedule.T + 1, (B,), generator=generator, device=x0.device)      # t ~ U{1..T}
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)     # eps ~ N(0, I)
    x_t = q_sample(x0, t, schedule, eps)                                 # DDPM eq. (4)
    with torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
        eps_hat = model(x_t, t)                                          # eps_theta(x_t, t)
    return simple_loss(eps, eps_hat.float())                             # DDPM eq. (14)


@torch.no_grad()
def ema_update(ema_params: list, params: list, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * theta for every tensor, in one multi-tensor call."""
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)


def train(config: TrainConfig, data="digits", out=None, seed: int | None = None, device=None,
          resume: bool = False, model_config: UNetConfig | None = None, progress: bool = True,
          callback=None, data_root=None, download: bool = False, budget_start: float | None = None) -> TrainResult:
    """Train a UNet on `data` with L_simple; returns a TrainResult (model, EMA model, history).

    data: a data set name for load_dataset ("digits", ...; its train split) or an ImageSet.
    out: checkpoint path, written every config.save_every steps, at the end, on Ctrl-C and when
      config.max_seconds runs out (None: nothing is saved).  seed: default 0.
    resume: continue from the checkpoint at `out` (model, EMA, optimizer, data order, RNG state);
      only steps, max_seconds, log_every and save_every may differ from the stored config.
    device: forced device, else pick_device().  model_config: default unet_config_for(data shape).
    callback(step, model): called after every step; raising KeyboardInterrupt there stops and saves.
    Ctrl-C stops at the end of the current step, saves and raises KeyboardInterrupt.
    Raises NonFiniteLossError naming the step when the loss is NaN or infinite (nothing is saved).
    budget_start: the time.monotonic() from which config.max_seconds counts (default: this call;
      the CLI passes its process start, so the whole command keeps the budget).
    Under torchrun (WORLD_SIZE > 1): one process per GPU (or CPU process, gloo), data sharded,
      gradients averaged by DistributedDataParallel, rank 0 saves; see diffusion_lib/distributed.py.
    """
    start = time.monotonic() if budget_start is None else float(budget_start)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (e.g. PRESETS['cpu']), got {type(config).__name__}")
    images, meta = _load_data(data, data_root, download)
    world = world_from_env()
    device = process_device(world, pick_device(device))
    progress = progress and world.main
    model_config = model_config or unet_config_for(images.shape[1:], config.model_size)
    ckpt = _resume_checkpoint(out, config, model_config, meta, device) if resume else None
    if ckpt is not None and seed is not None and seed != ckpt["seed"]:
        raise ValueError(f"seed={seed} but {out} was trained with seed={ckpt['seed']}; resume keeps its seed")
    seed = ckpt["seed"] if ckpt is not None else (0 if seed is None else int(seed))
    cuda = [device.index or torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _deferred_sigint() as sigint, process_group(world, device):
        run = _build(config, model_config, meta, device, seed, ckpt, out, world)
        bar = tqdm(total=config.steps, initial=run.step, desc=f"train {meta['name']}", unit="step",
                   disable=not progress, dynamic_ncols=True)
        try:
            stopped_by = _loop(run, shard(images, world).to(device), start, callback, bar, sigint)
            _flush(run, bar)
        except KeyboardInterrupt:
            if out is not None:
                _flush(run, bar)
                _save(run, start)
            if world.main:
                print(f"\ninterrupted at step {run.step}: " + (f"checkpoint saved to {out}; continue with "
                      f"resume=True (CLI: --resume)" if out is not None else "nothing saved (no out=)"),
                      file=sys.stderr)
            raise
        finally:
            bar.close()
        if out is not None and run.step != run.saved_step:
            _save(run, start)
    run.model.eval()
    return TrainResult(run.model, run.ema.eval(), run.schedule, {"loss": list(run.history)}, run.step,
                       run.elapsed + time.monotonic() - start, stopped_by, Path(out) if out is not None else None)


@dataclass
class _Run:
    """The state of one training run: everything a checkpoint holds."""

    config: TrainConfig
    model: UNet
    net: torch.nn.Module            # what the loss calls: model, or its DDP / compiled wrapper
    ema: UNet
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    order: torch.Generator          # data order
    noise: torch.Generator          # t and eps
    meta: dict
    seed: int
    out: Path | None
    world: World
    step: int = 0
    saved_step: int = -1
    elapsed: float = 0.0
    history: list = field(default_factory=list)
    pending: list = field(default_factory=list)      # loss tensors not yet read back


def _load_data(data, root, download):
    if isinstance(data, str):
        data = load_dataset(data, "train", root, download)
    if not isinstance(data, ImageSet):
        raise TypeError(f"data must be a data set name such as 'digits' or an ImageSet, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"data set {data.name!r} ({data.split}) holds no images")
    return data.images, {"name": data.name, "split": data.split, "shape": list(data.shape),
                         "levels": int(data.levels)}


def _resume_checkpoint(out, config, model_config, meta, device) -> dict:
    if out is None:
        raise ValueError("resume=True needs out=, the checkpoint to continue from")
    ckpt = load_checkpoint(out)
    check_resumable(ckpt, out, config.to_dict(), model_config.to_dict(), meta, device.type,
                    ignore=RUN_LENGTH + SPEED)
    return ckpt


def _build(config, model_config, meta, device, seed, ckpt, out, world: World) -> _Run:
    torch.random.default_generator.manual_seed(seed)       # weight init and dropout (inside fork_rng)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    model = UNet(model_config).to(device)                   # initialised on the CPU: the same on every rank
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    fused = device.type == "cuda"              # one kernel on CUDA; multi-tensor ops elsewhere
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=fused, foreach=not fused)
    order = torch.Generator(device).manual_seed(_rank_seed(seed, world.rank))
    noise = torch.Generator(device).manual_seed(_rank_seed(seed ^ 0x5DEECE66D, world.rank))
    net = wrap(model, world, device)           # DDP: gradients averaged over the ranks
    net = torch.compile(net) if config.compile else net
    if world.distributed:                      # dropout: a stream of its own on each rank
        torch.random.default_generator.manual_seed(_rank_seed(seed, world.rank, 1))
    run = _Run(config, model, net, ema, optimizer, make_schedule(config), order, noise, meta, seed,
               None if out is None else Path(out), world)
    if ckpt is not None:
        if not torch.equal(ckpt["schedule"]["betas"], run.schedule.betas):
            raise CheckpointError(f"{out}: its stored betas differ from the {config.schedule} schedule")
        load_weights(model, ckpt["model"], "model", out)
        load_weights(ema, ckpt["ema"], "EMA", out)
        optimizer.load_state_dict(ckpt["optimizer"])
        run.step = run.saved_step = int(ckpt["step"])
        _restore_rng(run, ckpt["rng"], device)
        run.history = torch.as_tensor(ckpt["history"]["loss"]).tolist()
        run.elapsed = float(ckpt.get("elapsed_seconds", 0.0))
    return run


def _rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process `rank` (seed itself for rank 0 at step 0): distinct batches and noise per rank."""
    if rank == 0 and step == 0:
        return seed
    return (seed + rank * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9) % 2**64


def _restore_rng(run: _Run, rng: dict, device) -> None:
    """The random state of a checkpoint (written by rank 0): exact for one process; under torchrun the
    other ranks start fresh streams seeded by (seed, rank, step), so a resumed multi-process run is
    an equally valid run, not a bitwise continuation."""
    if run.world.rank > 0:
        for i, g in enumerate((run.order, run.noise, torch.random.default_generator)):
            g.manual_seed(_rank_seed(run.seed + i, run.world.rank, run.step))
        return
    run.order.set_state(rng["data_order"])
    run.noise.set_state(rng["noise"])
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)


def _over_budget(cfg: TrainConfig, start: float, now: float, last: float) -> bool:
    """Would one more step (as long as the last one, now - last) overrun max_seconds?"""
    return cfg.max_seconds is not None and (now - start) + (now - last) > cfg.max_seconds


def _loop(run: _Run, images: torch.Tensor, start: float, callback, bar, sigint) -> str:
    """Optimizer steps until config.steps or the time budget; returns "steps" or "time"."""
    cfg, model, world = run.config, run.model, run.world
    params, ema_params = list(model.parameters()), list(run.ema.parameters())
    autocast = cfg.bf16 and images.device.type == "cuda"
    model.train()
    last = time.monotonic()
    while run.step < cfg.steps:
        now = time.monotonic()
        if not world.distributed and _over_budget(cfg, start, now, last):
            return "time"                           # the next step would overrun the budget
        last = now
        idx = torch.randint(images.shape[0], (cfg.batch_size,), generator=run.order, device=images.device)
        loss = loss_on_batch(run.net, images[idx], run.schedule, run.noise, autocast)  # Algorithm 1
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()                             # under DDP: gradients averaged over the ranks
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        for group in run.optimizer.param_groups:    # linear warmup, then constant
            group["lr"] = cfg.lr * min(1.0, (run.step + 1) / max(1, cfg.warmup_steps))
        run.optimizer.step()
        ema_update(ema_params, params, min(cfg.ema_decay, (1 + run.step) / (10 + run.step)))
        run.pending.append(loss.detach())
        run.step += 1
        bar.update()
        if callback is not None:
            _call_back(callback, run, sigint)
        saving = run.out is not None and cfg.save_every and run.step % cfg.save_every == 0
        if len(run.pending) >= cfg.log_every or saving:
            _flush(run, bar)                        # the only host sync: every log_every steps
        if saving:
            _save(run, start)
        if world.distributed:                       # every process stops at the same step
            sigint.hit, time_up = any_rank([sigint.hit, _over_budget(cfg, start, time.monotonic(), last)],
                                           world, images.device)
            if time_up and not sigint.hit and run.step < cfg.steps:
                return "time"
        if sigint.hit:
            raise KeyboardInterrupt
    return "steps"


def _call_back(callback, run: _Run, sigint) -> None:
    try:
        callback(run.step, run.model)
    except KeyboardInterrupt:
        if not run.world.distributed:
            raise
        sigint.hit = True                           # under DDP all ranks must stop together


def _flush(run: _Run, bar) -> None:
    """Read the pending losses back (averaged over the ranks), check them, append them to the history."""
    if not run.pending:
        return
    values = mean_over_ranks(torch.stack(run.pending).float(), run.world).tolist()
    first = run.step - len(values) + 1
    run.pending.clear()
    for i, v in enumerate(values):
        if not math.isfinite(v):
            kept = (f"the last good checkpoint {run.out} (step {run.saved_step}) is kept" if run.saved_step >= 0
                    else "no checkpoint was written")
            raise NonFiniteLossError(f"the loss became {v} at step {first + i}; training stopped and {kept}. "
                                     f"Try a lower learning rate (lr={run.config.lr}) or gradient clipping.")
    run.history.extend(values)
    bar.set_postfix(loss=f"{sum(values) / len(values):.4f}", refresh=False)


def _save(run: _Run, start: float) -> None:
    if not run.world.main:                          # rank 0 writes; the weights are the same everywhere
        run.saved_step = run.step
        return
    device = run.order.device
    rng = {"device": device.type, "data_order": run.order.get_state(), "noise": run.noise.get_state(),
           "torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
           "world_size": run.world.size}
    ckpt = make_checkpoint(run.model, run.ema, run.optimizer, run.schedule, run.config.to_dict(), run.meta,
                           run.step, run.seed, rng, run.history, run.elapsed + time.monotonic() - start)
    save_checkpoint(ckpt, run.out)
    run.saved_step = run.step


class _Flag:
    hit = False


@contextlib.contextmanager
def _deferred_sigint():
    """Turn the first Ctrl-C into a flag checked between steps (a second one interrupts at once)."""
    flag = _Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag                                  # signals reach the main thread only
        return

    def handler(signum, frame):
        if flag.hit:
            raise KeyboardInterrupt
        flag.hit = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
