"""The forward-process posterior q(x_{t-1} | x_t, x_0) and the eps-parametrisation.

Derived in notebooks/02_posterior.ipynb: completing the square in sec. 2, the eps-form of the
mean in sec. 4.
"""
from __future__ import annotations

import torch

from ..utils.validate import check_same_shape, check_tensor
from .schedules import Schedule, gather, previous


def posterior_mean_var(x0: torch.Tensor, xt: torch.Tensor, t, schedule: Schedule):
    """Mean and variance of q(x_{t-1} | x_t, x_0), for t in 1..T.

    mu_tilde  = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
              + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    beta_tilde = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t
    DDPM (Ho et al. 2020) eqs. (6)-(7); notebooks/02, sec. 2.

    x0, xt: (B, ...) of one shape;  t: int or LongTensor (B,) in 1..T.
    Returns (mean, var): mean like x0; var of shape (B, 1, ..., 1), broadcasting against x0.
    At t = 1 the posterior is a point mass at x0 (var = 0).
    """
    check_tensor(x0, "x0")
    check_same_shape(x0, xt, "x0", "xt")
    ab, ab_prev = schedule.alpha_bars, previous(schedule.alpha_bars)
    coef_x0 = gather(ab_prev.sqrt() * schedule.betas / (1 - ab), t, x0, lo=1)
    coef_xt = gather(schedule.alphas.sqrt() * (1 - ab_prev) / (1 - ab), t, x0, lo=1)
    mean = coef_x0 * x0 + coef_xt * xt                          # DDPM eq. (7); notebooks/02, sec. 2
    var = gather(schedule.beta_tildes, t, x0, lo=1)             # DDPM eq. (7); notebooks/02, sec. 2
    return mean, var


def predict_x0(xt: torch.Tensor, t, eps: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """The x_0 that, with noise eps, gives x_t: eq. (4) solved for x_0.

    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
    DDPM (Ho et al. 2020) eq. (15); DDIM (Song et al. 2020) eq. (9); notebooks/02, sec. 4.

    xt, eps: (B, ...) of one shape;  t: int or LongTensor (B,) in 0..T (at t = 0 the result is
    x_t itself, whatever eps is).  Returns x0_hat like xt.
    """
    check_tensor(xt, "xt")
    check_same_shape(xt, eps, "xt", "eps")
    sqrt_alpha_bar_t = gather(schedule.sqrt_alpha_bars, t, xt, lo=0)
    sqrt_one_minus_alpha_bar_t = gather(schedule.sqrt_one_minus_alpha_bars, t, xt, lo=0)
    return (xt - sqrt_one_minus_alpha_bar_t * eps) / sqrt_alpha_bar_t   # DDPM eq. (15); notebooks/02, sec. 4


def predict_eps(xt: torch.Tensor, t, x0: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """The noise eps that takes x_0 to x_t: eq. (4) solved for eps.

    eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)
    DDPM (Ho et al. 2020) eq. (4); notebooks/02, sec. 4.

    xt, x0: (B, ...) of one shape;  t: int or LongTensor (B,) in 1..T.  Returns eps like xt.
    """
    check_tensor(xt, "xt")
    check_same_shape(xt, x0, "xt", "x0")
    sqrt_alpha_bar_t = gather(schedule.sqrt_alpha_bars, t, xt, lo=1)
    sqrt_one_minus_alpha_bar_t = gather(schedule.sqrt_one_minus_alpha_bars, t, xt, lo=1)
    return (xt - sqrt_alpha_bar_t * x0) / sqrt_one_minus_alpha_bar_t   # DDPM eq. (4); notebooks/02, sec. 4


def mean_from_eps(xt: torch.Tensor, t, eps: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """The posterior mean mu_tilde(x_t, x0_hat(x_t, eps)) written in terms of eps.

    mu = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps)
    DDPM (Ho et al. 2020) eq. (11); notebooks/02, sec. 4.

    xt, eps: (B, ...) of one shape;  t: int or LongTensor (B,) in 1..T.  Returns mu like xt.
    """
    check_tensor(xt, "xt")
    check_same_shape(xt, eps, "xt", "eps")
    inv_sqrt_alpha_t = gather(schedule.alphas.rsqrt(), t, xt, lo=1)
    eps_coef = gather(schedule.betas / (1 - schedule.alpha_bars).sqrt(), t, xt, lo=1)
    return inv_sqrt_alpha_t * (xt - eps_coef * eps)              # DDPM eq. (11); notebooks/02, sec. 4
