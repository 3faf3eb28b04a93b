"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).

Derived in notebooks/05_ddpm_sampling.ipynb; the reverse mean comes from notebooks/02, sec. 4.
"""
from __future__ import annotations

import torch

from ..utils.validate import check_choice, check_same_shape, check_tensor
from .loop import call_model, resolve_device, start_noise, steps_bar
from ..process.posterior import mean_from_eps
from ..process.schedules import VARIANCES, Schedule, gather, reverse_variance

def ddpm_step(xt: torch.Tensor, t, eps: torch.Tensor, schedule: Schedule, noise: torch.Tensor,
              variance: str = "beta_tilde") -> torch.Tensor:
    """One ancestral step: x_{t-1} ~ p_theta(x_{t-1} | x_t).

    x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) + sigma_t z,
    z = noise for t > 1 and z = 0 at t = 1.  sigma_t^2 = beta_tilde_t or beta_t.
    DDPM (Ho et al. 2020) Algorithm 2, eq. (11); notebooks/05, sec. 1.

    xt, eps, noise: (B, ...) of one shape;  t: int or LongTensor (B,) in 1..T.
    """
    check_tensor(xt, "xt")
    check_same_shape(xt, noise, "xt", "noise")
    sigmas = reverse_variance(schedule, variance).sqrt().clone()
    sigmas[1] = 0.0                                              # Algorithm 2: z = 0 at t = 1
    sigma_t = gather(sigmas, t, xt, lo=1)
    return mean_from_eps(xt, t, eps, schedule) + sigma_t * noise  # DDPM Algorithm 2, line 4


@torch.no_grad()
def ddpm_sample(model, shape, schedule: Schedule, generator: torch.Generator | None = None,
                x_T: torch.Tensor | None = None, variance: str = "beta_tilde", device=None,
                progress: bool = False, callback=None) -> torch.Tensor:
    """Sample x_0 by running all T ancestral steps from x_T ~ N(0, I) (DDPM Algorithm 2).

    model: any callable (x_t, t) -> eps_hat, t a LongTensor (B,) in 1..T.
    shape: (B, ...) of the samples (ignored in favour of x_T's shape when x_T is given).
    generator: the source of all noise (x_T and every z); same seed and device, same samples.
        One z is drawn at every step, t = 1 included (where it is not used), so the generator's
        stream does not depend on `variance`.
    callback(t, x_t): called after each step with the new state x_{t-1} and its index t - 1.
    Returns x_0 of `shape`; float32 unless x_T has another dtype. notebooks/05, sec. 2.
    """
    check_choice(variance, "variance", VARIANCES)
    device = resolve_device(model, x_T, device, generator)
    x = start_noise(shape, x_T, generator, device)
    for t in steps_bar(range(schedule.T, 0, -1), progress, "DDPM"):
        eps_hat = call_model(model, x, t)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
        x = ddpm_step(x, t, eps_hat, schedule, noise, variance)
        if callback is not None:
            callback(t - 1, x)
    return x
