"""Checks for the exercises of notebook 01 (the forward process), in the order the notebook asks them:
01.1 alpha_bar (sec. 1.1), 01.2 the unscaled chain's variance (sec. 1.2), 01.3 q_sample (sec. 2.4).

`library_alpha_bars` is what the notebook runs on until the student's my_alpha_bars is correct
(`result.use(my_alpha_bars, fallback=exercises.nb01.library_alpha_bars)`).
"""
from __future__ import annotations

import math

import torch

from ...process.forward import q_sample
from ...process.schedules import Schedule, linear_schedule, previous
from .grading import TS, Result, _call, _compare, _predict, _run, _StudentError, _test_schedules


def library_alpha_bars(betas) -> torch.Tensor:
    """alpha_bar_t for t = 0..T from betas of shape (T+1,), betas[0] = 0: the library's
    Schedule(betas).alpha_bars (DDPM eq. 4; notebooks/01, eq. 1.4). float64 (T+1,)."""
    return Schedule(betas).alpha_bars


def check_alpha_bars(my_alpha_bars) -> Result:
    """Exercise 01.1: my_alpha_bars(betas) -> alpha_bar_t for t = 0..T, shape (T+1,). DDPM eq. (4);
    notebooks/01, eq. (1.4)."""
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
    """Exercise 01.3: my_q_sample(x0, t, schedule, noise) -> x_t, an int t in 0..T. DDPM eq. (4);
    notebooks/01, eq. (2.2)."""
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
    return _run("Exercise 01.3 q_sample", my_q_sample, lambda: _compare(list(cases())))


def check_unscaled_variance(prediction, v0: float = 4.0, n: int = 4000) -> Result:
    """Exercise 01.2: predict Var(x_T) of the chain WITHOUT sqrt(alpha_t), from x_0 = +-sqrt(v0),
    DDPM's linear schedule: exact v0 + sum_t beta_t (notebooks/01, eq. 1.6), measured on n chains."""
    s = linear_schedule()

    def measure():
        g = torch.Generator().manual_seed(3)
        x = (torch.randint(0, 2, (n,), generator=g).double() * 2 - 1) * math.sqrt(v0)
        for t in range(1, s.T + 1):
            x = x + s.betas[t].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)   # sec. 1.2
        return float(x.var()), float(x.var()) * math.sqrt(2 / (n - 1))
    return _predict("Exercise 01.2 predict Var(x_T) without the scaling", prediction,
                    v0 + float(s.betas.sum()), measure, 0.02, "Var(x_T)",
                    "Without sqrt(alpha_t) nothing shrinks: the data keeps its variance and the step "
                    "variances add up, v_T = v_0 + sum beta_t (eq. 1.6); with the scaling it would be "
                    "1 + alpha_bar_T (v_0 - 1), about 1 (eq. 1.4).")
