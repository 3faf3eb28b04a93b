"""How to train: TrainConfig, the presets `fast`, `cpu` and `gpu`, and the schedules a config can name.

One training code path serves every preset (loop.py); a preset only sets sizes and rates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..model.unet import SIZES
from ..process.schedules import Schedule, cosine_schedule, linear_schedule

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
    conditional: train a class-conditional U-Net eps(x_t, t, y) on the data set's labels, each label
    replaced by the null label with probability p_uncond (label dropout, Ho & Salimans 2022, sec. 3.2:
    one network learns eps(x_t, t, c) and eps(x_t, t, null); notebooks/09, eq. (1.7)). p_uncond in (0, 1).
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
    conditional: bool = False
    p_uncond: float = 0.1

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
        if not isinstance(self.conditional, bool) or not 0 < self.p_uncond < 1:
            bad.append(f"conditional True or False, got {self.conditional!r}; 0 < p_uncond < 1, got {self.p_uncond!r}")
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
# cpu: 8x8 digits on a laptop CPU: the 0.16M-parameter "tiny" U-Net, batch 128, lr 4e-3, 5000 steps
#   (its time and quality: README, "The shipped checkpoint"; tiny against small: benchmarks/README.md).
# gpu: one GPU, bf16 autocast; MNIST at 28x28 with the "small" U-Net (1.5M parameters).
PRESETS = {
    "fast": TrainConfig(model_size="tiny", steps=150, batch_size=32, lr=2e-3, warmup_steps=10,
                        ema_decay=0.99, log_every=10, save_every=0),
    "cpu": TrainConfig(),
    "gpu": TrainConfig(model_size="small", steps=20000, batch_size=512, lr=2e-3, warmup_steps=200,
                       ema_decay=0.9995, log_every=100, save_every=2000),
}


def make_schedule(config: TrainConfig) -> Schedule:
    """The noise schedule a TrainConfig names, with its T."""
    return SCHEDULES[config.schedule](config.T)
