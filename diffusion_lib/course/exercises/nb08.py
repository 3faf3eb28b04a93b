"""Checks for the exercises of notebook 08 (the score, the probability-flow ODE, DPM-Solver++). The library is
the oracle; errors are relative to the size of the terms of the formula (at least 1), so float32 arithmetic passes."""
from __future__ import annotations

import math

import torch

from ...data.toy import gaussian
from ...process.posterior import predict_x0
from ...process.schedules import cosine_schedule, linear_schedule
from ...samplers.ddim import ddim_timesteps
from ...samplers.dpm_solver import dpm_solver_sample, dpm_solver_step, logsnr_timesteps
from .grading import ALPHA_MIX, TS, Result, _alphas_as_alpha_bars, _call, _compare, _predict, _randn, _run

TWEEDIE_LAWS = ((0.5, 0.3), (-0.8, 0.05), (0.2, 2.0))      # (mu, sigma_data): a wide, a narrow and a very wide Gaussian


def _tweedie(xt, ab, mu, sigma_data, variance=None):
    """E[x_0 | x_t] for x_0 ~ N(mu, sigma_data^2) by Tweedie's formula at alpha_bar_t = ab, the score's variance
    replaceable."""
    v = ab * sigma_data ** 2 + 1 - ab if variance is None else variance
    score = -(xt - ab.sqrt() * mu) / v                                          # notebooks/08, eq. (1.6)
    return (xt + (1 - ab) * score) / ab.sqrt()                                 # notebooks/08, eq. (1.3)


def check_tweedie_gaussian(my_tweedie) -> Result:
    """Exercise 08.1: my_tweedie(xt, t, schedule, mu, sigma_data) -> E[x_0 | x_t] for x_0 ~ N(mu, sigma_data^2) in
    1-D, xt: (B,), t an int in 1..T, mu and sigma_data floats. Tweedie's formula, notebooks/08, eqs. (1.3) and (1.6).
    Compared with predict_x0 of the exact eps* (`gaussian(mu, sigma_data).optimal_eps`), which is E[x_0 | x_t]
    (sec. 1), for three Gaussians, DDPM's linear and the cosine schedule, t from 1 to T. The error is relative to
    the terms of (1.3), x_t / sqrt(alpha_bar_t) and the score term, which nearly cancel where alpha_bar_t is tiny."""
    g = torch.Generator().manual_seed(80)
    xt = 2 * _randn(g, 16)

    def cases():
        for schedule in (linear_schedule(), cosine_schedule()):
            for (mu, sigma_data), t in ((law, t) for law in TWEEDIE_LAWS for t in TS):
                law = gaussian(mu, sigma_data)
                exact = predict_x0(xt[:, None], t, law.optimal_eps(xt[:, None], t, schedule), schedule)[:, 0]
                ab = schedule.alpha_bars[t]
                terms = 1 + (xt.abs() + (1 - ab) * (xt - ab.sqrt() * mu).abs()
                             / (ab * sigma_data ** 2 + 1 - ab)) / ab.sqrt()
                yield (f"t={t}, mu={mu}, sigma_data={sigma_data} ({schedule.name})",
                       _call(my_tweedie, xt, t, schedule, mu, sigma_data), exact, terms, {
                           "x_t / sqrt(alpha_bar_t): the score term (1 - alpha_bar_t) grad log q_t(x_t) is left out":
                               xt / ab.sqrt(),
                           "x_t + (1 - alpha_bar_t) grad log q_t(x_t), not divided by sqrt(alpha_bar_t)":
                               _tweedie(xt, ab, mu, sigma_data) * ab.sqrt(),
                           "the score of q(x_t | x_0 = mu), variance 1 - alpha_bar_t: the marginal q_t has variance "
                           "alpha_bar_t sigma_data^2 + 1 - alpha_bar_t (1.6)":
                               _tweedie(xt, ab, mu, sigma_data, variance=1 - ab),
                           "sigma_data in place of sigma_data^2 in the variance of q_t":
                               _tweedie(xt, ab, mu, sigma_data, ab * sigma_data + 1 - ab),
                           ALPHA_MIX: _tweedie(xt, schedule.alphas[t], mu, sigma_data)})
    return _run("Exercise 08.1 Tweedie's denoiser", my_tweedie, lambda: _compare(list(cases())))


def _d_2m(schedule, t_last, t, t_prev, x0_hat, x0_hat_last, rho=None, factor=0.5):
    """D of the 2M step (notebooks/08, eq. 4.8) with the step ratio rho = h_last / h and the factor 1/2 replaceable
    (mistakes)."""
    lam = schedule.lambdas
    rho = float((lam[t] - lam[t_last]) / (lam[t_prev] - lam[t])) if rho is None else rho
    return (1 + factor / rho) * x0_hat - factor / rho * x0_hat_last


def check_dpm_2m_step(my_dpm_2m_step) -> Result:
    """Exercise 08.2: my_dpm_2m_step(xt, t, t_prev, x0_hat, schedule, x0_hat_last, t_last) -> x_{t_prev}, one step of
    DPM-Solver++(2M) for ints t_last > t > t_prev >= 1 (the arguments of `dpm_solver_step`).
    DPM-Solver++ Algorithm 2; notebooks/08, eqs. (4.6), (4.8).
    Compared with `dpm_solver_step` on (4, 1, 4, 4) float64 inputs, on three-time windows of DDIM's grid (10, 20 and
    50 steps) and of the log-SNR grid, DDPM's linear schedule."""
    sched, g = linear_schedule(), torch.Generator().manual_seed(81)
    xt, x0_hat, x0_hat_last = (_randn(g, 4, 1, 4, 4) for _ in range(3))
    alphas = _alphas_as_alpha_bars(sched)
    grids = [ddim_timesteps(sched.T, S) for S in (10, 20, 50)] + [logsnr_timesteps(sched, 10)]
    windows = [tuple(grid[i:i + 3]) for grid in grids for i in (0, len(grid) // 2, len(grid) - 3)]

    def cases():
        for t_last, t, t_prev in windows:
            step = lambda D: dpm_solver_step(xt, t, t_prev, D, sched)     # eq. (4.6) with D in place of x0_hat
            exact = dpm_solver_step(xt, t, t_prev, x0_hat, sched, x0_hat_last, t_last)
            lam = sched.lambdas
            b_ratio = float(sched.sqrt_one_minus_alpha_bars[t_prev] / sched.sqrt_one_minus_alpha_bars[t])   # b_s / b_t
            x0_coef = float(sched.sqrt_alpha_bars[t_prev]) * -math.expm1(-float(lam[t_prev] - lam[t]))
            rho = float((lam[t] - lam[t_last]) / (lam[t_prev] - lam[t]))                  # rho = h_last / h
            terms = 1 + b_ratio * xt.abs() + x0_coef * ((1 + 0.5 / rho) * x0_hat.abs() + 0.5 / rho * x0_hat_last.abs())
            got = _call(my_dpm_2m_step, xt, t, t_prev, x0_hat, sched, x0_hat_last, t_last)
            yield (f"t_last={t_last}, t={t}, t_prev={t_prev}", got,
                   exact, terms, {
                       "the first-order step (DDIM): x0_hat_last is not used":
                           dpm_solver_step(xt, t, t_prev, x0_hat, sched),
                       "1/rho in place of 1/(2 rho) in D": step(_d_2m(sched, t_last, t, t_prev, x0_hat, x0_hat_last,
                                                                       factor=1.0)),
                       "rho upside down, h / h_last in place of h_last / h": step(_d_2m(sched, t_last, t, t_prev,
                                                                                         x0_hat, x0_hat_last,
                                                                                         rho=1 / rho)),
                       "step sizes measured in t, not in lambda: rho = (t_last - t) / (t - t_prev)": step(_d_2m(
                           sched, t_last, t, t_prev, x0_hat, x0_hat_last, rho=(t_last - t) / (t - t_prev))),
                       "x0_hat and x0_hat_last swapped in D":
                           step(_d_2m(sched, t_last, t, t_prev, x0_hat_last, x0_hat)),
                       ALPHA_MIX: dpm_solver_step(xt, t, t_prev, x0_hat, alphas, x0_hat_last, t_last)})
    return _run("Exercise 08.2 DPM-Solver++(2M) step", my_dpm_2m_step, lambda: _compare(list(cases())))


def solver_error(order: int, steps: int, t_fix: int = 100, mu: float = 0.5, sigma_data: float = 0.1,
                 n: int = 1000) -> float:
    """Largest error at time t_fix of DPM-Solver++ of `order` with `steps` steps (DDIM's grid), against the exact
    probability-flow map on N(mu, sigma_data^2) data with the exact eps* (notebooks/08, eq. 5.1): n seeded codes,
    float64. t_fix must lie on the grid (T (S/10) / S = 100 for S a multiple of 10 when T = 1000)."""
    schedule = linear_schedule()
    law, ab = gaussian(mu, sigma_data), schedule.alpha_bars
    x_T = _randn(torch.Generator().manual_seed(82), n, 1)
    kept = {}
    dpm_solver_sample(law.eps_model(schedule), None, schedule, steps=steps, order=order, x_T=x_T,
                      callback=lambda t_prev, x: kept.__setitem__(t_prev, x))
    z = (x_T - ab[-1].sqrt() * mu) / (ab[-1] * sigma_data ** 2 + 1 - ab[-1]).sqrt()      # conserved, eq. (5.1)
    exact = ab[t_fix].sqrt() * mu + (ab[t_fix] * sigma_data ** 2 + 1 - ab[t_fix]).sqrt() * z
    return float((kept[t_fix] - exact).abs().max())


def check_error_ratio(prediction, steps: int = 50) -> Result:
    """Exercise 08.3: predict e(S) / e(2S), the factor by which DPM-Solver++(2M)'s error at t = 100 falls when the
    number of steps doubles from S = 50 to 100 (Gaussian data, the exact eps*, `solver_error`). The "exact" value is
    the library's measured ratio, a deterministic computation; within 25 % counts."""
    ratio = solver_error(2, steps) / solver_error(2, 2 * steps)
    ratio_ddim = solver_error(1, steps) / solver_error(1, 2 * steps)
    return _predict(
        f"Exercise 08.3 predict e(S) / e(2S) of DPM-Solver++(2M), S = {steps}", prediction, ratio, None, 0.25,
        f"e({steps}) / e({2 * steps})",
        f"A method of order p has a global error of about C h^p, with h ~ 1/S the step size, so doubling S divides it "
        f"by 2^p: 4 for DPM-Solver++(2M) (p = 2), 2 for DDIM (p = 1; the library gives {ratio_ddim:.3f} for it). The "
        f"measured factor is not exactly 4: the constant C holds only as h -> 0, and the first step is first order "
        f"(its error, O(h^2), is of the same order as the rest).")
