"""The forward (noising) process q: one step, and the closed form q(x_t | x_0).

Derived in notebooks/01_forward_process.ipynb: the single step in sec. 1, the closed form by
induction in sec. 2.
"""
from __future__ import annotations

import torch

from ..utils.validate import check_same_shape, check_tensor
from .schedules import Schedule, gather


def q_step(x_prev: torch.Tensor, t, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """One forward step: sample x_t ~ q(x_t | x_{t-1}).

    x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) noise,   noise ~ N(0, I)
    DDPM (Ho et al. 2020) eq. (2); notebooks/01, sec. 1.

    x_prev: (B, ...) the state x_{t-1};  t: int or LongTensor (B,) in 1..T;
    noise: same shape as x_prev.  Returns x_t with x_prev's shape and dtype.
    """
    check_tensor(x_prev, "x_prev")
    check_same_shape(x_prev, noise, "x_prev", "noise")
    # coefficients in float64, cast at use (docs/design.md, "Precision")
    name = "t (q_step makes x_t from x_{t-1}, so t >= 1)"
    sqrt_alpha_t = gather(schedule.alphas.sqrt(), t, x_prev, lo=1, name=name)
    sqrt_beta_t = gather(schedule.betas.sqrt(), t, x_prev, lo=1, name=name)
    return sqrt_alpha_t * x_prev + sqrt_beta_t * noise          # DDPM eq. (2); notebooks/01, sec. 1


def q_sample(x0: torch.Tensor, t, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in one shot (the compressed chain).

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise,   noise ~ N(0, I)
    DDPM (Ho et al. 2020) eq. (4); notebooks/01, sec. 2.

    x0: (B, ...) data;  t: int or LongTensor (B,) in 0..T (t = 0 returns x0);
    noise: same shape as x0.  Returns x_t with x0's shape and dtype.
    """
    check_tensor(x0, "x0")
    check_same_shape(x0, noise, "x0", "noise")
    sqrt_alpha_bar_t = gather(schedule.sqrt_alpha_bars, t, x0, lo=0)
    sqrt_one_minus_alpha_bar_t = gather(schedule.sqrt_one_minus_alpha_bars, t, x0, lo=0)
    return sqrt_alpha_bar_t * x0 + sqrt_one_minus_alpha_bar_t * noise  # DDPM eq. (4); notebooks/01, sec. 2
