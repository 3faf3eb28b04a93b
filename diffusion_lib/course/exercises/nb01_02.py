"""Checks for the exercises that end notebooks 01 and 02: is a student's answer right, how far off is it?

An exercise is three cells (docs/teaching.md, sec. 5): the student's cell, a stub (`def my_f(...):
raise NotImplementedError` or `my_prediction = None`); in the repository only, a hidden cell tagged
"solution" that redefines the name, marked `@exercises.solution` (or `exercises.solution(14.05)`),
which `make student` removes; and the check, e.g. `exercises.check_alpha_bars(my_alpha_bars)`.
A check prints "correct", "not yet: max error X at t=Y (expected A, got B)" with a hint when the
answer matches a typical mistake, or "not attempted yet", and returns a Result. It never raises for
a student's answer (the student copy runs top to bottom), only for a wrong answer marked as a
solution (so the repository's notebooks, run by the tests, fail). The helpers live in
_exercise_core.py; notebook 03's checks are in exercises_elbo.py, 04's in exercises_training.py,
those of 05-07 in exercises_sampling.py, each built on the same helpers.
"""
from __future__ import annotations

import math

import torch

from .grading import (TOL, TS, Result, _call, _compare, _NotAttempted, _predict,  # noqa: F401
                             _run, _StudentError, _test_schedules, solution)
from ...samplers.ddim import ddim_sigma
from ...process.forward import q_sample, q_step
from ...process.posterior import posterior_mean_var
from ...process.schedules import Schedule, cosine_schedule, linear_schedule, previous  # noqa: F401  (exercises.linear_schedule)


# ---- notebooks/01, sec. 6 -----------------------------------------------------------------------

def check_alpha_bars(my_alpha_bars) -> Result:
    """Exercise 01.1: my_alpha_bars(betas) -> alpha_bar_t for t = 0..T, shape (T+1,). DDPM eq. (4)."""
    def body():
        cases = [(f"t={{i}} ({s.name})", _call(my_alpha_bars, s.betas), s.alpha_bars, 1.0, {
            "alpha_bar_{t-1}: the product must include s = t": previous(s.alpha_bars),
            "the product of the betas, not of the alphas = 1 - betas": torch.cumprod(s.betas, 0),
            "1 - (sum of the betas), only a first-order approximation": 1 - torch.cumsum(s.betas, 0),
            "sqrt(alpha_bar_t): no square root here": s.alpha_bars.sqrt()}) for s in _test_schedules()]
        if cases[0][1].shape == (cases[0][2].numel() - 1,):
            raise _StudentError("you returned T values; the array has T+1: index 0 is the clean state, "
                                "alpha_bar_0 = 1 (notebook 00, sec. 5)")
        return _compare(cases)
    return _run("Exercise 01.1 alpha_bar", my_alpha_bars, body)


def check_q_sample(my_q_sample) -> Result:
    """Exercise 01.2: my_q_sample(x0, t, schedule, noise) -> x_t, an int t in 0..T. DDPM eq. (4)."""
    s, g = linear_schedule(), torch.Generator().manual_seed(1)
    x0, noise = (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    ab, a = s.alpha_bars, s.alphas

    def cases():
        for t in (0,) + TS:
            yield (f"t={t}", _call(my_q_sample, x0, t, s, noise), q_sample(x0, t, s, noise), 1.0, {
                "alpha_t in place of alpha_bar_t (one step, not t)": a[t].sqrt() * x0 + (1 - a[t]).sqrt() * noise,
                "the formula without its square roots": ab[t] * x0 + (1 - ab[t]) * noise,
                "alpha_bar_{t-1}: t off by one": q_sample(x0, max(t - 1, 0), s, noise),
                "x0 and noise swapped": ab[t].sqrt() * noise + (1 - ab[t]).sqrt() * x0})
    return _run("Exercise 01.2 q_sample", my_q_sample, lambda: _compare(list(cases())))


def check_unscaled_variance(prediction, v0: float = 4.0, n: int = 4000) -> Result:
    """Exercise 01.3: predict Var(x_T) of the chain WITHOUT sqrt(alpha_t), from x_0 = +-sqrt(v0),
    DDPM's linear schedule: exact v0 + sum_t beta_t (notebooks/01, eq. 1.6), measured on n chains."""
    s = linear_schedule()

    def measure():
        g = torch.Generator().manual_seed(3)
        x = (torch.randint(0, 2, (n,), generator=g).double() * 2 - 1) * math.sqrt(v0)
        for t in range(1, s.T + 1):
            x = x + s.betas[t].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)   # sec. 1.2
        return float(x.var()), float(x.var()) * math.sqrt(2 / (n - 1))
    return _predict("Exercise 01.3 predict Var(x_T) without the scaling", prediction,
                    v0 + float(s.betas.sum()), measure, 0.02, "Var(x_T)",
                    "Without sqrt(alpha_t) nothing shrinks: the data keeps its variance and the step "
                    "variances add up, v_T = v_0 + sum beta_t (eq. 1.6); with the scaling it would be "
                    "1 + alpha_bar_T (v_0 - 1), about 1 (eq. 1.4).")


# ---- notebooks/02, sec. 7 -----------------------------------------------------------------------

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
