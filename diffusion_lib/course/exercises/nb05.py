"""Checks for the exercises of notebook 05 (DDPM sampling). The library is the oracle; errors are relative to the size of the terms of the formula (at least 1), so float32 arithmetic passes."""
from __future__ import annotations

import math

import torch

from ...process.posterior import mean_from_eps, posterior_mean_var
from ...process.schedules import linear_schedule, reverse_variance
from ...samplers.ddim import ddim_sample
from ...samplers.ddpm import ddpm_sample, ddpm_step
from .grading import TS, Result, _call, _compare, _predict, _randn, _run


def check_ddpm_step(my_ddpm_step) -> Result:
    """Exercise 05.1: my_ddpm_step(xt, t, eps, schedule, noise, variance) -> x_{t-1}, an int t in 1..T,
    variance "beta_tilde" or "beta". DDPM Algorithm 2 / eq. (11); notebooks/05, eqs. (1.1)-(1.3).
    Compared with `ddpm_step` for both variances at t in TS, on (4, 1, 4, 4) float64 inputs."""
    s, g = linear_schedule(), torch.Generator().manual_seed(50)
    xt, eps, noise = (_randn(g, 4, 1, 4, 4) for _ in range(3))
    a, ab, b = s.alphas, s.alpha_bars, s.betas

    def cases():
        for variance, t in ((v, t) for v in ("beta_tilde", "beta") for t in TS):
            sigma2, z = reverse_variance(s, variance), noise if t > 1 else 0 * noise   # Algorithm 2, line 3
            mean, exact = mean_from_eps(xt, t, eps, s), ddpm_step(xt, t, eps, s, noise, variance)
            yield (f"t={t}, variance={variance!r}", _call(my_ddpm_step, xt, t, eps, s, noise, variance), exact,
                   1 + xt.abs() + eps.abs() + noise.abs(), {
                "noise added at t = 1 too (Algorithm 2, line 3: z = 0 at t = 1)": mean + sigma2[t].sqrt() * noise,
                "sigma_t^2 = beta_tilde_t whatever `variance` says": ddpm_step(xt, t, eps, s, noise, "beta_tilde"),
                "sigma_t^2 = beta_t whatever `variance` says": ddpm_step(xt, t, eps, s, noise, "beta"),
                "sigma_t^2 used as sigma_t: scale the noise by the square root": mean + sigma2[t] * z,
                "alpha_bar_t in place of alpha_t in 1 / sqrt(alpha_t)":
                    (xt - b[t] / (1 - ab[t]).sqrt() * eps) / ab[t].sqrt() + sigma2[t].sqrt() * z,
                "beta_t / (1 - alpha_bar_t): the square root in the eps coefficient is missing":
                    (xt - b[t] / (1 - ab[t]) * eps) / a[t].sqrt() + sigma2[t].sqrt() * z,
                "the schedule read at t - 1: t off by one (NaN at t = 1)":
                    (xt - b[t - 1] / (1 - ab[t - 1]).sqrt() * eps) / a[t - 1].sqrt() + sigma2[t - 1].sqrt() * z})
    return _run("Exercise 05.1 ddpm_step", my_ddpm_step, lambda: _compare(list(cases())))


def check_reverse_variance(prediction, t: int = 100, n: int = 200_000) -> Result:
    """Exercise 05.2: predict Var(x_{t-1} | x_t = 0) / beta_t for data x_0 = +-1 (equal probability) under DDPM's
    linear schedule, t = 100. Exact by the law of total variance (notebooks/02, eq. 6.2; notebooks/05, eq. 1.5):
    beta_tilde_t + k^2 Var(x_0 | x_t = 0), k the coefficient of x_0 in mu_tilde (from `posterior_mean_var`), and
    Var(x_0 | x_t = 0) = 1 by symmetry. Measured: the sample variance of n seeded draws of x_{t-1} given x_t = 0.
    Within 2 % counts."""
    s = linear_schedule()
    x_t, x0 = torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, -1.0], dtype=torch.float64)
    mu, var = posterior_mean_var(x0, x_t, t, s)              # q(x_{t-1} | x_t = 0, x_0 = +1 and -1)
    var = var[0]
    beta, half_gap = float(s.betas[t]), float(mu[0] - mu[1]) / 2
    exact = (float(var) + half_gap ** 2) / beta              # (6.2): E Var + Var E; E[mu] = 0 by symmetry

    def measure():
        g = torch.Generator().manual_seed(52)
        sign = torch.randint(0, 2, (n,), generator=g)            # x_0 | x_t = 0: +1 or -1, each with probability 1/2
        x = mu[sign] + float(var) ** 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
        sq = (x - x.mean()) ** 2 / beta
        return float(sq.mean()), float(sq.std()) / math.sqrt(n)

    return _predict(
        f"Exercise 05.2 predict Var(x_(t-1) | x_t = 0) / beta_t for +-1 data, t = {t}", prediction, exact, measure,
        0.02, f"Var(x_{t - 1} | x_{t} = 0) / beta_{t}",
        f"At x_t = 0 both signs of x_0 are equally likely, so Var(x_0 | x_t = 0) = 1, more than the 1 - alpha_bar_t = "
        f"{float(1 - s.alpha_bars[t]):.3f} that standard normal data would leave. By (1.5) the reverse variance is "
        f"beta_tilde_t + (coefficient of x_0 in mu_tilde)^2 * 1 = ({float(var) / beta:.4f} + {half_gap ** 2 / beta:.4f}) beta_t, above beta_t, the "
        f"'upper end' for Gaussian data: the spread within each branch (beta_tilde_t) plus the spread between the "
        f"branches' means mu_tilde(0, +1) and mu_tilde(0, -1), {2 * half_gap:.3f} apart. "
        f"At t = 1 the ratio is 1 / beta_1 = {1 / float(s.betas[1]):.0f}: there x_(t-1) is the data point itself.")


def check_cost_ratio(prediction, steps: int = 50) -> Result:
    """Exercise 05.3: predict (wall time of DDPM, T = 1000 steps) / (wall time of DDIM, `steps` steps), same
    model and batch: the network calls of `ddpm_sample` / `ddim_sample`, counted. Within 5 % counts."""
    s, calls = linear_schedule(), []

    def counting_model(xt, t):
        calls.append(t)
        return torch.zeros_like(xt)
    ddpm_sample(counting_model, (1, 1), s, generator=torch.Generator().manual_seed(0))
    n_ddpm = len(calls)
    ddim_sample(counting_model, (1, 1), s, steps=steps, eta=1.0, generator=torch.Generator().manual_seed(0))
    n_ddim = len(calls) - n_ddpm
    return _predict(
        f"Exercise 05.3 predict the cost of DDPM against DDIM-{steps}", prediction, n_ddpm / n_ddim, None, 0.05,
        f"network calls of ddpm_sample / ddim_sample(steps={steps}) = {n_ddpm} / {n_ddim}",
        "Every step, DDPM's or DDIM's, with fresh noise or without, is one network call on the whole batch, and "
        "the step's own arithmetic is negligible (sec. 3): DDPM costs T ceil(N/B) calls (3.1), DDIM S ceil(N/B), "
        "so the ratio is T / S whatever N and B. That is all of DDIM's gain in speed; what it costs in quality is "
        "notebook 06, sec. 5.3.")
