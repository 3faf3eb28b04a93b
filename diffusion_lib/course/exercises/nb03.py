"""Checks for the exercises of notebook 03 (the ELBO): 03.1 in sec. 2, 03.2 and 03.3 in sec. 5.

`exercises.check_normal_kl(my_normal_kl)` and its siblings print "correct", "not yet: ..." (how far
off, where, and the typical mistake the answer matches) or "not attempted yet", and return a Result
(grading.py; docs/design.md, sec. 5). Notation as in notebook 00, sec. 4: gamma_t is the weight of the
t-th term of the bound in eps form (DDPM eq. 12), V1, V2 the variances of the two Gaussians of (2.8).
"""
from __future__ import annotations

import torch

from .grading import TS, Result, _call, _compare, _predict, _run, _test_schedules
from ...process.elbo import normal_kl, simple_loss_weights
from ...process.schedules import cosine_schedule, linear_schedule


class _Args:
    """A `where` for _compare that names the arguments at the worst element: "(mean1=0.3, ...)"."""

    def __init__(self, **args: torch.Tensor):
        self.args = {name: a.flatten() for name, a in args.items()}

    def format(self, i) -> str:
        if not isinstance(i, int):
            return "the inputs"
        return "(" + ", ".join(f"{name}={float(a[i]):.4g}" for name, a in self.args.items()) + ")"


# ---- notebooks/03, sec. 2 (03.1) and sec. 5 (03.2, 03.3) ------------------------------------------

def check_normal_kl(my_normal_kl) -> Result:
    """Exercise 03.1: my_normal_kl(mean1, logvar1, mean2, logvar2) -> KL(N1 || N2), elementwise, nats.

    Exact: notebooks/03, eq. (2.8), compared with `normal_kl` on 200 random argument sets of
    shape (4, 50) (means ~ N(0, 1), log-variances ~ N(0, 4), five pairs with N1 = N2). The error
    is relative to the size of the terms of (2.8), 1 + |logvar1| + |logvar2| + V1/V2 + (m1-m2)^2/V2.
    """
    g = torch.Generator().manual_seed(30)
    m1, m2 = (torch.randn(4, 50, generator=g, dtype=torch.float64) for _ in range(2))
    lv1, lv2 = (2 * torch.randn(4, 50, generator=g, dtype=torch.float64) for _ in range(2))
    m2[0, :5], lv2[0, :5] = m1[0, :5], lv1[0, :5]                        # KL(N || N) = 0
    v1, v2, d2 = lv1.exp(), lv2.exp(), (m1 - m2) ** 2
    kl = normal_kl(m1, lv1, m2, lv2)                                      # eq. (2.8)
    size = 1 + lv1.abs() + lv2.abs() + v1 / v2 + d2 / v2
    sd1, sd2 = (lv1 / 2).exp(), (lv2 / 2).exp()
    mistakes = {
        "KL(N2 || N1): the arguments swapped; the KL is not symmetric": normal_kl(m2, lv2, m1, lv1),
        "(2.8) without its factor 1/2": 2 * kl,
        "(2.8) without its -1 (then KL(N || N) = 1/2, not 0)": kl + 0.5,
        "(2.8) with log(V1/V2) in place of log(V2/V1)": kl - (lv2 - lv1),
        "(2.8) with (m1 - m2)^2 divided by V1, not V2": kl + d2 / 2 * (1 / v1 - 1 / v2),
        "(2.8) with exp(logvar / 2), the standard deviation, as the variance":
            0.5 * ((lv2 - lv1) / 2 + (sd1 + d2) / sd2 - 1),
        "(2.8) with the log-variances used as variances: exp() them first":
            0.5 * (torch.log(lv2 / lv1) + (lv1 + d2) / lv2 - 1)}

    def body():
        got = _call(my_normal_kl, m1, lv1, m2, lv2)
        status, message, error = _compare([(_Args(mean1=m1, logvar1=lv1, mean2=m2, logvar2=lv2),
                                            got, kl, size, mistakes)])
        if status != "correct" and got.shape == kl.shape and bool(got.isnan().any()):
            message += (". Your answer has NaNs: the log of a negative number? logvar1 and logvar2 are "
                        "log-variances, negative for variances below 1")
        return status, message, error
    return _run("Exercise 03.1 normal_kl", my_normal_kl, body)


def check_simple_loss_weight(my_simple_loss_weight) -> Result:
    """Exercise 03.2: my_simple_loss_weight(schedule, t) -> gamma_t for sigma_t^2 = beta_tilde_t, int t in 2..T.

    gamma_t = beta_t / (2 alpha_t (1 - alpha_bar_{t-1}))  (DDPM eq. 12; notebooks/03, eq. 5.5),
    compared with `simple_loss_weights(schedule, "beta_tilde")` on the linear, cosine and a random
    schedule; the error is relative to gamma_t.
    """
    def cases():
        for s in _test_schedules():
            gamma, b, a, ab, snr = simple_loss_weights(s, "beta_tilde"), s.betas, s.alphas, s.alpha_bars, s.snr
            for t in (TS[1:] if s.T == 1000 else range(2, s.T + 1)):
                yield (f"t={t} ({s.name})", _call(my_simple_loss_weight, s, t), gamma[t], gamma[t], {
                    "gamma_t for sigma_t^2 = beta_t (the other choice), which is also (5.5) with "
                    "1 - alpha_bar_t in place of 1 - alpha_bar_{t-1}": simple_loss_weights(s, "beta")[t],
                    "alpha_bar_t in place of alpha_t": b[t] / (2 * ab[t] * (1 - ab[t - 1])),
                    "alpha_{t-1} in place of alpha_bar_{t-1}": b[t] / (2 * a[t] * (1 - a[t - 1])),
                    "gamma_{t-1}: t off by one (index 0 of the schedule arrays is the clean state)":
                        b[t - 1] / (2 * a[t - 1] * (1 - ab[t - 2])),
                    "(5.4) without its factor 1/2": 2 * gamma[t],
                    "beta_t in place of beta_t^2 in (5.4)": gamma[t] / b[t],
                    "the SNR ratio of (5.5) upside down": 0.5 * (snr[t] / snr[t - 1] - 1)})
    return _run("Exercise 03.2 gamma_t", my_simple_loss_weight, lambda: _compare(list(cases())))


def check_weight_minimum(prediction) -> Result:
    """Exercise 03.3: predict the t in 2..T where L_simple over-weights the bound most, for the
    cosine schedule (Nichol & Dhariwal 2021), T = 1000: the t of the smallest gamma_t
    (sigma_t^2 = beta_tilde_t; notebooks/03, eq. 5.5). Within 10 % of the exact t counts.
    """
    gamma = simple_loss_weights(cosine_schedule(), "beta_tilde")
    t_min = int(gamma[2:].argmin()) + 2
    gamma_lin = simple_loss_weights(linear_schedule(), "beta_tilde")
    t_lin = int(gamma_lin[2:].argmin()) + 2
    return _predict(
        "Exercise 03.3 predict where L_simple over-weights most (cosine)", prediction, float(t_min), None,
        0.10, "argmin_t gamma_t",
        f"L_simple weights each term by 1, the bound by gamma_t: relative to the bound it over-weights "
        f"most where gamma_t is smallest, here {1 / float(gamma[t_min]):.0f} times (at t = 2 only "
        f"{1 / float(gamma[2]):.1f} times). By (5.5), gamma_t = (SNR(t-1)/SNR(t) - 1)/2 ~ -(1/2) d log SNR/dt, "
        f"smallest where log SNR falls slowest; for SNR(t) ~ cot^2(pi t / 2T) (notebook 01, eq. 3.7) that "
        f"rate is (2 pi / T) / sin(pi t / T), slowest at t = T/2 (the offset delta = 0.008 moves it a few steps). "
        f"The linear schedule's minimum is at t = {t_lin} (sec. 5).")
