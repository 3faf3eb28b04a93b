"""Checks for the exercises of notebook 02 (the posterior): 02.1 beta_tilde and 02.2 mu_tilde (sec. 2),
02.3 the posterior over a jump and 02.4 the ratio beta_tilde_2 / beta_2 (sec. 2.3-2.4).

`library_posterior_variance` and `library_posterior_mean` are what the notebook runs on until the
student's functions are correct (`result.use(my_posterior_mean, fallback=exercises.nb02.library_posterior_mean)`).
"""
from __future__ import annotations

import math

import torch

from ...process.forward import q_step
from ...process.posterior import posterior_mean_var
from ...process.schedules import linear_schedule
from ...samplers.ddim import ddim_sigma
from .grading import TS, Result, _call, _compare, _predict, _run, _test_schedules


def library_posterior_variance(schedule, t: int) -> torch.Tensor:
    """beta_tilde_t, the variance of q(x_{t-1} | x_t, x_0), for an int t in 1..T: the library's
    schedule.beta_tildes[t] (DDPM eq. 7; notebooks/02, eq. 2.5). A float64 scalar tensor."""
    return schedule.beta_tildes[t]


def library_posterior_mean(x0, xt, t: int, schedule) -> torch.Tensor:
    """mu_tilde_t(x_t, x_0) for an int t in 1..T: the mean of the library's posterior_mean_var
    (DDPM eq. 7; notebooks/02, eq. 2.6). Shape of x0."""
    return posterior_mean_var(x0, xt, t, schedule)[0]

def check_posterior_variance(my_posterior_variance) -> Result:
    """Exercise 02.1: my_posterior_variance(schedule, t) -> beta_tilde_t, an int t in 1..T. DDPM eq. (7)."""
    def cases():
        for s in _test_schedules():
            ab, a, b = s.alpha_bars, s.alphas, s.betas
            for t in (TS if s.T == 1000 else range(1, s.T + 1)):
                yield (f"t={t} ({s.name})", _call(my_posterior_variance, s, t), s.beta_tildes[t], b[t], {
                    "beta_t: the forward variance, not the posterior's": b[t],
                    "beta_tilde_{t-1}: t off by one": s.beta_tildes[t - 1],
                    "alpha_t in place of alpha_bar_t": (1 - a[t - 1]) / (1 - a[t]) * b[t],
                    "the ratio upside down": (1 - ab[t]) / (1 - ab[t - 1]) * b[t]})
    return _run("Exercise 02.1 beta_tilde", my_posterior_variance, lambda: _compare(list(cases())))


def check_posterior_mean(my_posterior_mean) -> Result:
    """Exercise 02.2: my_posterior_mean(x0, xt, t, schedule) -> mu_tilde, an int t in 1..T. DDPM eq. (7)."""
    s, g = linear_schedule(), torch.Generator().manual_seed(2)
    x0, xt = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    ab, a, b = s.alpha_bars, s.alphas, s.betas

    def cases():
        for t in TS:
            c0, ct = ab[t - 1].sqrt() * b[t] / (1 - ab[t]), a[t].sqrt() * (1 - ab[t - 1]) / (1 - ab[t])
            yield (f"t={t}", _call(my_posterior_mean, x0, xt, t, s), posterior_mean_var(x0, xt, t, s)[0], 1.0, {
                "the formula without its square roots":
                    (ab[t - 1] * b[t] * x0 + a[t] * (1 - ab[t - 1]) * xt) / (1 - ab[t]),
                "alpha_{t-1} in place of alpha_bar_{t-1}":
                    (a[t - 1].sqrt() * b[t] * x0 + a[t].sqrt() * (1 - a[t - 1]) * xt) / (1 - ab[t]),
                "the coefficients of x0 and xt swapped": ct * x0 + c0 * xt,
                "mu_tilde at t-1: t off by one": posterior_mean_var(x0, xt, max(t - 1, 1), s)[0]})
    return _run("Exercise 02.2 mu_tilde", my_posterior_mean, lambda: _compare(list(cases())))


def check_skip_variance(my_skip_variance) -> Result:
    """Exercise 02.3: my_skip_variance(schedule, t, s) -> the variance of q(x_s | x_t, x_0), 0 <= s < t.

    Exact: (1 - alpha_bar_s) / (1 - alpha_bar_t) (1 - alpha_bar_t / alpha_bar_s), which is DDIM's
    sigma_t(eta = 1)^2 (DDIM eq. 16; notebooks/06) and beta_tilde_t when s = t - 1.
    """
    sch, like = linear_schedule(), torch.zeros(1, 1, dtype=torch.float64)
    ab = sch.alpha_bars

    def cases():
        for t, s in ((1, 0), (2, 1), (10, 9), (10, 5), (100, 0), (100, 50), (500, 499), (1000, 500),
                     (1000, 980), (1000, 1)):
            exact = ddim_sigma(sch, t, s, 1.0, like).reshape(()) ** 2
            yield (f"t={t}, s={s}", _call(my_skip_variance, sch, t, s), exact, 1 - ab[t] / ab[s], {
                "beta_t in place of 1 - alpha_bar_t / alpha_bar_s (one step, not the jump)":
                    (1 - ab[s]) / (1 - ab[t]) * sch.betas[t],
                "beta_tilde_t, the one-step answer": sch.beta_tildes[t],
                "the prior variance 1 - alpha_bar_s alone": 1 - ab[s]})
    return _run("Exercise 02.3 variance of q(x_s | x_t, x_0)", my_skip_variance, lambda: _compare(list(cases())))


def check_variance_ratio(prediction, n: int = 20000) -> Result:
    """Exercise 02.4: predict beta_tilde_2 / beta_2 for DDPM's linear schedule, within 15 %.

    Measured: the residual variance of x_1 regressed on (1, x_0, x_2), x_0 ~ N(0, 1), over beta_2.
    """
    s = linear_schedule()

    def measure():
        g = torch.Generator().manual_seed(4)
        x0 = torch.randn(n, 1, generator=g, dtype=torch.float64)
        x1 = q_step(x0, 1, s, torch.randn(n, 1, generator=g, dtype=torch.float64))
        x2 = q_step(x1, 2, s, torch.randn(n, 1, generator=g, dtype=torch.float64))
        X = torch.cat([torch.ones_like(x0), x0, x2], 1)
        resid = x1 - X @ torch.linalg.lstsq(X, x1).solution
        ratio = float((resid ** 2).sum() / (n - 3) / s.betas[2])
        return ratio, ratio * math.sqrt(2 / (n - 3))
    return _predict("Exercise 02.4 predict beta_tilde_2 / beta_2", prediction, float(s.beta_tildes[2] / s.betas[2]),
                    measure, 0.15, "Var(x_1 | x_2, x_0) / beta_2",
                    "beta_tilde_t <= beta_t always (eq. 6.1). At t = 2 the ratio is (1 - alpha_bar_1) / "
                    "(1 - alpha_bar_2) = beta_1 / (beta_1 + beta_2 - beta_1 beta_2), about 1/2 because "
                    "beta_1 ~ beta_2: knowing x_0 as well as x_2 halves the variance of x_1.")
