"""Checks for the exercises of notebook 06 (DDIM). The library is the oracle; errors are relative to the size of the terms of the formula (at least 1), so float32 arithmetic passes."""
from __future__ import annotations

import math

import torch

from ...process.posterior import predict_x0
from ...process.schedules import linear_schedule
from ...samplers.ddim import ddim_sigma, ddim_step
from .grading import ALPHA_MIX, F64, Result, _alphas_as_alpha_bars, _call, _compare, _predict, _randn, _run, _test_schedules

def check_ddim_sigma(my_ddim_sigma) -> Result:
    """Exercise 06.1: my_ddim_sigma(schedule, t, t_prev, eta) -> sigma_{t -> t_prev}(eta), ints 0 <= t_prev < t.
    DDIM eq. (16); notebooks/06, eq. (2.3). Against `ddim_sigma` on one-step and longer jumps (t_prev = 0 too),
    eta in {0.5, 1}, linear, cosine and a random 10-step schedule; sigma <= 1, so the error is absolute."""
    like = torch.zeros(1, 1, dtype=F64)

    def cases():
        for s in _test_schedules():
            ab, a = s.alpha_bars, s.alphas
            jumps = ((1, 0), (2, 1), (10, 9), (500, 499), (1000, 999), (1000, 980), (980, 960), (600, 400), (100, 0),
                     (1000, 0)) if s.T == 1000 else ((1, 0), (2, 1), (7, 6), (10, 9), (10, 8), (9, 3), (5, 0))
            for (t, u), eta in ((jump, eta) for jump in jumps for eta in (0.5, 1.0)):
                exact, sigma_1 = (ddim_sigma(s, t, u, e, like).reshape(()) for e in (eta, 1.0))
                yield (f"t={t}, t_prev={u}, eta={eta} ({s.name})", _call(my_ddim_sigma, s, t, u, eta), exact, 1.0, {
                    "the one-step sigma (2.4), eta sqrt(beta_tilde_t), used for a jump: alpha_bar_{t-1} in place "
                    "of alpha_bar_{t_prev}": eta * s.beta_tildes[t].sqrt(),
                    ALPHA_MIX: eta * ((1 - a[u]) / (1 - a[t])).sqrt() * (1 - a[t] / a[u]).sqrt(),
                    "sigma^2, not sigma: take the square root": exact ** 2,
                    "eta^2 in place of eta": eta * exact,
                    "eta ignored: sigma(eta = 1)": sigma_1,
                    "the first ratio upside down, (1 - alpha_bar_t) / (1 - alpha_bar_{t_prev})":
                        eta * ((1 - ab[t]) / (1 - ab[u])).sqrt() * (1 - ab[t] / ab[u]).sqrt()})
    return _run("Exercise 06.1 sigma(eta)", my_ddim_sigma, lambda: _compare(list(cases())))


def check_ddim_step(my_ddim_step) -> Result:
    """Exercise 06.2: my_ddim_step(xt, t, t_prev, eps, schedule, eta, noise) -> x_{t_prev}, ints 0 <= t_prev < t.
    DDIM eq. (12) with sigma from eq. (16); notebooks/06, eq. (2.2). Compared with `ddim_step` on
    (4, 1, 4, 4) float64 inputs, one-step and longer jumps, eta in {0, 0.5, 1}."""
    s, g = linear_schedule(), torch.Generator().manual_seed(60)
    xt, eps, noise = (_randn(g, 4, 1, 4, 4) for _ in range(3))
    alphas = _alphas_as_alpha_bars(s)

    def cases():
        for (t, u), eta in ((jump, eta) for jump in ((1000, 980), (980, 960), (500, 480), (1000, 999), (100, 99),
                                                     (2, 1), (1, 0), (20, 0), (1000, 0)) for eta in (0.0, 0.5, 1.0)):
            exact, sigma, ab_u = ddim_step(xt, t, u, eps, s, eta, noise), ddim_sigma(s, t, u, eta, xt), s.alpha_bars[u]
            terms = 1 + (ab_u / s.alpha_bars[t]).sqrt() * (xt.abs() + eps.abs()) + eps.abs() + noise.abs()
            yield (f"t={t}, t_prev={u}, eta={eta}", _call(my_ddim_step, xt, t, u, eps, s, eta, noise), exact, terms, {
                "sigma of eta = 1 whatever eta is": ddim_step(xt, t, u, eps, s, 1.0, noise),
                "sigma_t^2 left out of the direction term, sqrt(1 - alpha_bar_{t_prev}) eps":
                    ab_u.sqrt() * predict_x0(xt, t, eps, s) + (1 - ab_u).sqrt() * eps + sigma * noise,
                "the one-step update: alpha_bar_{t-1} in place of alpha_bar_{t_prev}":
                    ddim_step(xt, t, t - 1, eps, s, eta, noise),
                ALPHA_MIX: ddim_step(xt, t, u, eps, alphas, eta, noise),
                "sigma^2 in place of sigma on the fresh noise": exact + (sigma ** 2 - sigma) * noise})
    return _run("Exercise 06.2 ddim_step", my_ddim_step, lambda: _compare(list(cases())))


def check_jump_noise(prediction, t: int = 1000, t_prev: int = 980, n: int = 4000) -> Result:
    """Exercise 06.3: predict sigma of the first step of DDIM with 50 steps at eta = 1 (t = 1000 -> 980,
    DDPM's linear schedule): exact by `ddim_sigma`; measured as the spread of `ddim_step`'s output over
    n noise draws at fixed x_t and eps. Within 5 % counts."""
    s = linear_schedule()
    ab, b = s.alpha_bars, s.betas

    def measure():
        g = torch.Generator().manual_seed(61)
        xt, eps = _randn(g, 1, 1).expand(n, 1), _randn(g, 1, 1).expand(n, 1)
        sd = float(ddim_step(xt, t, t_prev, eps, s, 1.0, _randn(g, n, 1)).std())
        return sd, sd / math.sqrt(2 * (n - 1))
    return _predict(
        f"Exercise 06.3 predict sigma of the step {t} -> {t_prev} at eta = 1", prediction,
        float(ddim_sigma(s, t, t_prev, 1.0, torch.zeros(1, 1, dtype=F64))), measure, 0.05, "sigma",
        f"eta = 1 with 50 steps is not DDPM in 50 steps. A DDPM step at t = {t} adds sqrt(beta_tilde_{t}) = "
        f"{float(s.beta_tildes[t].sqrt()):.3f}; this DDIM step jumps {t - t_prev} steps, and at eta = 1 its variance "
        f"is that of DDPM's posterior over the whole jump (2.3; exercise 02.3), close to 1 - alpha_bar_{t} / "
        f"alpha_bar_{t_prev} = 1 - (the product of {t - t_prev} alphas) = {float(1 - ab[t] / ab[t_prev]):.3f}. That is "
        f"less than the sum of the {t - t_prev} betas, {float(b[t_prev + 1:t + 1].sum()):.3f}: each step also shrinks "
        f"the noise before it by sqrt(alpha) (notebook 01, sec. 1).")
