"""Training eps_theta with L_simple (DDPM Algorithm 1): one code path for every preset and device.

    repeat:  x_0 ~ data,  t ~ Uniform{1..T},  eps ~ N(0, I)
             x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (q_sample, DDPM eq. 4)
             gradient step on || eps - eps_theta(x_t, t) ||^2                   (simple_loss, eq. 14)
DDPM (Ho et al. 2020) Algorithm 1; notebooks/04, sec. 3. AdamW, gradient clipping, LR warmup, an
exponential moving average (EMA) of the weights that is what we sample with (DDPM sec. 4).
A conditional run (TrainConfig.conditional) also draws each image's label y, replaced by the null
label with probability p_uncond, and trains eps_theta(x_t, t, y): Ho & Salimans 2022, Algorithm 1.

All randomness comes from two seeded generators on the training device (data order; t and eps)
and the global RNG inside torch.random.fork_rng (weight init and dropout), so a run is
reproducible and a resumed run continues exactly (run_state.py).
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import ImageSet, load_dataset
from ..model.unet import UNet, UNetConfig, unet_config_for
from ..process.elbo import simple_loss
from ..process.forward import q_sample
from ..process.schedules import Schedule
from ..utils.devices import pick_device
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .distributed import any_rank, mean_over_ranks, process_device, process_group, shard, world_from_env
from .run_state import RunState, new_run, restore, resumable_checkpoint


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


def loss_on_batch(model, x0: torch.Tensor, schedule: Schedule, generator: torch.Generator,
                  autocast: bool = False, y: torch.Tensor | None = None) -> torch.Tensor:
    """L_simple on one batch (DDPM Algorithm 1, lines 2-5); notebooks/04, sec. 3. x0: (B, C, H, W).

    y: labels (B,) of a conditional model (after label dropout), which is then called model(x_t, t, y).
    """
    B = x0.shape[0]
    t = torch.randint(1, schedule.T + 1, (B,), generator=generator, device=x0.device)      # t ~ U{1..T}
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)     # eps ~ N(0, I)
    x_t = q_sample(x0, t, schedule, eps)                                 # DDPM eq. (4)
    with torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
        eps_hat = model(x_t, t) if y is None else model(x_t, t, y)       # eps_theta(x_t, t[, y])
    return simple_loss(eps, eps_hat.float())                             # DDPM eq. (14)


def drop_labels(y: torch.Tensor, p_uncond: float, null: int, generator: torch.Generator) -> torch.Tensor:
    """Label dropout: each label replaced by the null label with probability p_uncond.

    c <- null with probability p_uncond: Ho & Salimans 2022, Algorithm 1, line 3; notebooks/09, eq. (1.7).
    y: LongTensor (B,); one uniform draw per label from `generator` (on y's device).
    """
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, null), y)


@torch.no_grad()
def ema_update(ema_params: list, params: list, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * theta for every tensor, in one multi-tensor call."""
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)


def train(config: TrainConfig, data="digits", out=None, *, seed: int | None = None, device=None,
          resume: bool = False, model_config: UNetConfig | None = None, progress: bool = True,
          callback=None) -> TrainResult:
    """Train a UNet on `data` with L_simple; returns a TrainResult (model, EMA model, history).

    data: an ImageSet (load_dataset(...)), or a data set name whose train split is loaded.
    out: checkpoint path, written every config.save_every steps, at the end, on Ctrl-C and when
      config.max_seconds runs out (None: nothing is saved).  seed: default 0.
    resume: continue from the checkpoint at `out` (model, EMA, optimizer, data order, RNG state);
      only steps, max_seconds, log_every and save_every may differ from the stored config.
    device: forced device, else pick_device().  model_config: default unet_config_for(data shape).
    callback(step, model): called after every step; raising KeyboardInterrupt there stops and saves.
    Ctrl-C stops at the end of the current step, saves and raises KeyboardInterrupt.
    Raises NonFiniteLossError naming the step when the loss is NaN or infinite (nothing is saved).
    Under torchrun (WORLD_SIZE > 1): one process per GPU (or CPU process, gloo), data sharded,
      gradients averaged by DistributedDataParallel, rank 0 saves; see distributed.py.
    """
    start = time.monotonic()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (e.g. PRESETS['cpu']), got {type(config).__name__}")
    images, labels, meta = _training_images(data)
    world = world_from_env()
    device = process_device(world, pick_device(device))
    model_config = _model_config(config, model_config, images, labels)
    ckpt = resumable_checkpoint(out, config, model_config, meta, device) if resume else None
    if ckpt is not None and seed is not None and seed != ckpt["seed"]:
        raise ValueError(f"seed={seed} but {out} was trained with seed={ckpt['seed']}; resume keeps its seed")
    seed = ckpt["seed"] if ckpt is not None else (0 if seed is None else int(seed))
    cuda = [device.index or torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _deferred_sigint() as sigint, process_group(world, device):
        run = new_run(config, model_config, meta, device, seed, out, world)
        if ckpt is not None:
            restore(run, ckpt)
        bar = tqdm(total=config.steps, initial=run.step, desc=f"train {meta['name']}", unit="step",
                   disable=not (progress and world.main), dynamic_ncols=True)
        with bar:
            labels = shard(labels, world).to(device) if config.conditional else None
            stopped_by = _run_until_done(run, shard(images, world).to(device), labels, start, callback, bar,
                                         sigint)
    run.model.eval()
    return TrainResult(run.model, run.ema.eval(), run.schedule, {"loss": list(run.history)}, run.step,
                       run.elapsed + time.monotonic() - start, stopped_by, run.out)


def _training_images(data) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(images, labels, description) of the training set: an ImageSet, or a data set name (its train split)."""
    if isinstance(data, str):
        data = load_dataset(data, "train")
    if not isinstance(data, ImageSet):
        raise TypeError(f"data must be a data set name such as 'digits' or an ImageSet, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"data set {data.name!r} ({data.split}) holds no images")
    return data.images, data.labels, {"name": data.name, "split": data.split, "shape": list(data.shape),
                                      "levels": int(data.levels)}


def _model_config(config: TrainConfig, model_config: UNetConfig | None, images, labels) -> UNetConfig:
    """The UNet to train: model_config, or unet_config_for the images; a conditional run gets
    num_classes = the largest label + 1 (10 for digits), an unconditional one num_classes = 0."""
    model_config = model_config or unet_config_for(images.shape[1:], config.model_size)
    classes = int(labels.max()) + 1 if config.conditional else 0
    if config.conditional and int(labels.min()) < 0:
        raise ValueError(f"a conditional run needs labels >= 0, got {int(labels.min())}")
    if model_config.num_classes not in (0, classes):
        raise ValueError(f"model_config.num_classes = {model_config.num_classes} does not fit this run: "
                         + (f"the data set has {classes} classes" if classes else
                            "TrainConfig.conditional is False (pass conditional=True to train with labels)"))
    return replace(model_config, num_classes=classes)


def _run_until_done(run: RunState, images: torch.Tensor, labels, start: float, callback, bar, sigint) -> str:
    """The loop, and what happens when it ends: saved at the end, or on Ctrl-C before re-raising."""
    try:
        stopped_by = _loop(run, images, labels, start, callback, bar, sigint)
        _flush(run, bar)
    except KeyboardInterrupt:
        if run.out is not None:
            _flush(run, bar)
            _save(run, start)
        if run.world.main:
            print(f"\ninterrupted at step {run.step}: " + (f"checkpoint saved to {run.out}; continue with "
                  f"resume=True (CLI: --resume)" if run.out is not None else "nothing saved (no out=)"),
                  file=sys.stderr)
        raise
    if run.out is not None and run.step != run.saved_step:
        _save(run, start)
    return stopped_by


def _loop(run: RunState, images: torch.Tensor, labels, start: float, callback, bar, sigint) -> str:
    """Optimizer steps until config.steps or the time budget; returns "steps" or "time".
    labels: (N,) for a conditional run, else None."""
    params, ema_params = list(run.model.parameters()), list(run.ema.parameters())
    autocast = run.config.bf16 and images.device.type == "cuda"
    run.model.train()
    last = time.monotonic()
    while run.step < run.config.steps:
        now = time.monotonic()
        if not run.world.distributed and _over_budget(run.config, start, now, last):
            return "time"                           # the next step would overrun the budget
        last = now
        _step(run, images, labels, params, ema_params, autocast)
        bar.update()
        if callback is not None:
            _call_back(callback, run, sigint)
        _log_and_save(run, bar, start)
        if _stop_together(run, start, last, sigint):
            return "time"
    return "steps"


def _step(run: RunState, images: torch.Tensor, labels, params: list, ema_params: list, autocast: bool) -> None:
    """One optimizer step of Algorithm 1 with gradient clipping, LR warmup and the EMA update.
    A conditional run (labels given) drops labels first, from the same generator as t and eps."""
    cfg = run.config
    idx = torch.randint(images.shape[0], (cfg.batch_size,), generator=run.order, device=images.device)
    y = None if labels is None else drop_labels(labels[idx], cfg.p_uncond, run.model.config.num_classes, run.noise)
    loss = loss_on_batch(run.net, images[idx], run.schedule, run.noise, autocast, y)   # Algorithm 1
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()                                 # under DDP: gradients averaged over the ranks
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
    for group in run.optimizer.param_groups:        # linear warmup, then constant
        group["lr"] = cfg.lr * min(1.0, (run.step + 1) / max(1, cfg.warmup_steps))
    run.optimizer.step()
    ema_update(ema_params, params, min(cfg.ema_decay, (1 + run.step) / (10 + run.step)))
    run.pending.append(loss.detach())
    run.step += 1


def _over_budget(cfg: TrainConfig, start: float, now: float, last: float) -> bool:
    """Would one more step (as long as the last one, now - last) overrun max_seconds?"""
    return cfg.max_seconds is not None and (now - start) + (now - last) > cfg.max_seconds


def _stop_together(run: RunState, start: float, last: float, sigint) -> bool:
    """After a step: raise KeyboardInterrupt on Ctrl-C; True when the time budget is spent (torchrun).

    Under torchrun one all-reduce tells every process of a Ctrl-C or a spent budget on any rank,
    so that all stop at the same step (a rank that stopped alone would hang the others).
    """
    if run.world.distributed:
        now = time.monotonic()
        sigint.hit, time_up = any_rank([sigint.hit, _over_budget(run.config, start, now, last)],
                                       run.world, run.order.device)
        if time_up and not sigint.hit and run.step < run.config.steps:
            return True
    if sigint.hit:
        raise KeyboardInterrupt
    return False


def _log_and_save(run: RunState, bar, start: float) -> None:
    """Read the losses back every log_every steps (the only host sync) and save every save_every."""
    cfg = run.config
    saving = run.out is not None and cfg.save_every and run.step % cfg.save_every == 0
    if len(run.pending) >= cfg.log_every or saving:
        _flush(run, bar)
    if saving:
        _save(run, start)


def _call_back(callback, run: RunState, sigint) -> None:
    try:
        callback(run.step, run.model)
    except KeyboardInterrupt:
        if not run.world.distributed:
            raise
        sigint.hit = True                           # under DDP all ranks must stop together


def _flush(run: RunState, bar) -> None:
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


def _save(run: RunState, start: float) -> None:
    """Rank 0 writes the checkpoint (the weights are the same on every rank)."""
    if run.world.main:
        save_checkpoint(run.to_checkpoint(time.monotonic() - start), run.out)
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
