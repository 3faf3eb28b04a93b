"""Tests of the forward-process posterior q(x_{t-1} | x_t, x_0) and the eps-parametrisation.

diffusion_lib/process/posterior.py: posterior_mean_var, predict_x0, predict_eps, mean_from_eps;
derived in notebooks/02_posterior.ipynb (sec. 2: completing the square, sec. 3: the checks,
sec. 4: the eps-form).

Three kinds of check:
- float64 identities against formulas written out here (and against an independent route, the
  unsimplified precision form 1/beta_tilde = alpha_t/beta_t + 1/(1 - alpha_bar_{t-1})). Tolerance
  1e-11 relative to the largest value compared: float64 rounds at 1.1e-16, but 1 - alpha_bar_t at
  small t (1e-4 at t = 1) is a subtraction that loses about four digits, so rounding reaches ~1e-12.
  Deterministic: false-failure rate 0.
- quadrature of Bayes' rule q(x_t|x_{t-1}) q(x_{t-1}|x_0) on a dense 1-D grid (trapezoid rule,
  exponentially accurate on a Gaussian; its error, measured: README, Tests). Tolerance 1e-8
  (variance relative; mean relative to |mu_tilde| + sqrt(beta_tilde)). Deterministic:
  false-failure rate 0.
- Monte Carlo: least squares of x_{t-1} on (1, x_0, x_t) over simulated chains, compared with
  the closed form within K = 4.5 standard errors (OLS standard errors; sqrt(2/(n-p)) s^2 for the
  residual variance). Per comparison the two-sided Gaussian false-failure rate is 6.8e-6; there
  are 12 comparisons (3 values of t x 4 quantities), so the module is designed to fail by chance
  with probability at most 8.2e-5 (union bound). The generators are seeded, so every run gives the
  same result; the rate is the chance that a seed picked at random fails with correct code.
  The seed sweep (scripts/seed_sweep.py) checks it; measured: README, Tests.
Bad inputs: rows of tests/test_bad_inputs.py.
"""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid
from torch.testing import assert_close

from diffusion_lib import (GaussianMixture, cosine_schedule, linear_schedule, mean_from_eps,
                           posterior_mean_var, predict_eps, predict_x0, q_sample, q_step)
from diffusion_lib.course.verify import within_se

K = 4.5                   # standard errors allowed: verify.false_failure_rate(4.5) = 6.8e-6
RTOL = 1e-11              # float64 identities, relative to the largest value compared
F64 = torch.float64

SCHEDULES = {
    "linear": linear_schedule(),
    "cosine": cosine_schedule(),
    "short": linear_schedule(T=20, beta_start=1e-3, beta_end=0.3),
}


@pytest.fixture(params=list(SCHEDULES), ids=list(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]


def assert_scaled_close(actual, expected, rtol=RTOL):
    # max |actual - expected| <= rtol * max |expected|
    assert_close(actual, expected, rtol=0.0, atol=rtol * float(expected.abs().max()))


def ab_prev(schedule, t):
    return schedule.alpha_bars[t - 1]


# ---------------------------------------------------------------------------------- closed forms

def test_variance_is_beta_tilde_for_every_t(schedule):
    T = schedule.T
    t = torch.arange(1, T + 1)
    x0 = torch.zeros(T, 2, 3, dtype=F64)
    _, var = posterior_mean_var(x0, x0.clone(), t, schedule)
    assert var.shape == (T, 1, 1)
    b, a, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    beta_tilde = (1 - ab_prev(schedule, t)) / (1 - ab) * b                  # DDPM eq. (7)
    assert_scaled_close(var.flatten(), beta_tilde)
    assert_scaled_close(var.flatten(), schedule.beta_tildes[1:])
    # the unsimplified form: precisions add, 1/beta_tilde = alpha_t/beta_t + 1/(1 - alpha_bar_{t-1})
    precision = a[1:] / b[1:] + 1 / (1 - ab_prev(schedule, t[1:]))         # notebooks/02, eq. (2.3)
    assert_scaled_close(var.flatten()[1:], 1 / precision)
    assert bool((var.flatten() <= b).all()), "beta_tilde_t must not exceed beta_t"


def test_mean_matches_precision_weighted_form(schedule):
    # mu_tilde = B / A (notebooks/02, eq. 2.4) for t = 2..T, against the simplified eq. (2.6)
    T = schedule.T
    g = torch.Generator().manual_seed(1)
    t = torch.arange(2, T + 1)
    x0 = torch.randn(T - 1, 5, generator=g, dtype=F64)
    xt = torch.randn(T - 1, 5, generator=g, dtype=F64)
    b, a = schedule.betas[t, None], schedule.alphas[t, None]
    abp = ab_prev(schedule, t)[:, None]
    A = a / b + 1 / (1 - abp)
    B = a.sqrt() / b * xt + abp.sqrt() / (1 - abp) * x0
    mean, _ = posterior_mean_var(x0, xt, t, schedule)
    assert_scaled_close(mean, B / A)


def test_variance_for_gaussian_data_identity(schedule):
    # law of total variance (notebooks/02, eq. 6.2): for x_0 ~ N(0, 1) the reverse variance
    # beta_tilde_t + c0^2 (1 - alpha_bar_t) is exactly beta_t; c0 read off posterior_mean_var
    T = schedule.T
    t = torch.arange(1, T + 1)
    c0, var = posterior_mean_var(torch.ones(T, 1, dtype=F64), torch.zeros(T, 1, dtype=F64), t, schedule)
    total = var.flatten() + c0.flatten() ** 2 * (1 - schedule.alpha_bars[1:])
    assert_scaled_close(total, schedule.betas[1:])


# ------------------------------------------------------------------------------------ quadrature

def _log_normal(x, mean, var):
    return -0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def _quadrature_moments(schedule, t, x0, xt, n=20_001):
    # mean and variance of q(x_t|x_{t-1}) q(x_{t-1}|x_0) over x_{t-1}, on a grid built from the
    # two factors only (12 sd around the prior mean and around the likelihood's peak)
    a, b = float(schedule.alphas[t]), float(schedule.betas[t])
    abp = float(schedule.alpha_bars[t - 1])
    prior_m, prior_sd = math.sqrt(abp) * x0, math.sqrt(1 - abp)
    lik_m, lik_sd = xt / math.sqrt(a), math.sqrt(b / a)
    x = np.linspace(min(prior_m - 12 * prior_sd, lik_m - 12 * lik_sd),
                    max(prior_m + 12 * prior_sd, lik_m + 12 * lik_sd), n)
    log_p = _log_normal(xt, math.sqrt(a) * x, b) + _log_normal(x, prior_m, prior_sd ** 2)
    p = np.exp(log_p - log_p.max())
    Z = trapezoid(p, x)
    mean = trapezoid(x * p, x) / Z
    return mean, trapezoid((x - mean) ** 2 * p, x) / Z


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("where", ["t=2", "t=3", "t=T/2", "t=T"])
@pytest.mark.parametrize("x0, xt", [(0.8, None), (-0.5, 1.5)], ids=["typical_xt", "atypical_xt"])
def test_posterior_matches_quadrature_of_bayes_rule(name, where, x0, xt):
    schedule = SCHEDULES[name]
    t = {"t=2": 2, "t=3": 3, "t=T/2": schedule.T // 2, "t=T": schedule.T}[where]
    if xt is None:                       # an x_t the forward process produces: eps = 0.3 in eq. (4)
        ab = float(schedule.alpha_bars[t])
        xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * 0.3
    num_mean, num_var = _quadrature_moments(schedule, t, x0, xt)
    mean, var = posterior_mean_var(torch.tensor([[x0]], dtype=F64), torch.tensor([[xt]], dtype=F64),
                                   t, schedule)
    mean, var = float(mean), float(var)
    assert abs(num_mean - mean) <= 1e-8 * (abs(mean) + math.sqrt(var)), (num_mean, mean)
    assert abs(num_var / var - 1) <= 1e-8, (num_var, var)


# ----------------------------------------------------------------------------------- Monte Carlo

@pytest.mark.parametrize("t", [2, 30, 1000])
def test_monte_carlo_regression_recovers_posterior(t):
    # x_{t-1} = c0 x_0 + ct x_t + r, r ~ N(0, beta_tilde) independent of (x_0, x_t), whatever the
    # law of x_0 (here a non-Gaussian mixture): OLS must return the closed-form coefficients
    schedule = SCHEDULES["linear"]
    n = 100_000
    g = torch.Generator().manual_seed(10 + t)
    data = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-0.8], [0.5]]),
                           torch.tensor([[0.05], [0.2]]))
    x0 = data.sample(n, generator=g)                                           # (n, 1) float64
    x_prev = q_sample(x0, t - 1, schedule, noise=torch.randn(n, 1, generator=g, dtype=F64))
    xt = q_step(x_prev, t, schedule, noise=torch.randn(n, 1, generator=g, dtype=F64))
    X = torch.cat([torch.ones_like(x0), x0, xt], dim=1)
    y = x_prev.flatten()
    coef = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    s2 = ((y - X @ coef) ** 2).sum() / (n - 3)
    se = (s2 * torch.linalg.inv(X.T @ X).diagonal()).sqrt()
    c0, _ = posterior_mean_var(torch.ones(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), t, schedule)
    ct, var = posterior_mean_var(torch.zeros(1, 1, dtype=F64), torch.ones(1, 1, dtype=F64), t, schedule)
    within_se(f"t={t} intercept", coef[0], 0.0, se[0], k=K)
    within_se(f"t={t} coefficient of x_0", coef[1], c0, se[1], k=K)
    within_se(f"t={t} coefficient of x_t", coef[2], ct, se[2], k=K)
    within_se(f"t={t} residual variance", s2, var, math.sqrt(2 / (n - 3)) * s2, k=K)


# ------------------------------------------------------------------------------------ eps-form

def test_mean_from_eps_is_posterior_mean_of_predict_x0(schedule):
    # DDPM eq. (11) == eq. (7) with x_0 from eq. (15), every t at once (notebooks/02, sec. 4)
    T = schedule.T
    g = torch.Generator().manual_seed(2)
    t = torch.arange(1, T + 1)
    xt = torch.randn(T, 2, 4, generator=g, dtype=F64)
    eps = torch.randn(T, 2, 4, generator=g, dtype=F64)
    via_x0, _ = posterior_mean_var(predict_x0(xt, t, eps, schedule), xt, t, schedule)
    assert_scaled_close(mean_from_eps(xt, t, eps, schedule), via_x0)
    # and against eq. (11) written out here
    shape = (T, 1, 1)
    a, b = schedule.alphas[t].reshape(shape), schedule.betas[t].reshape(shape)
    ab = schedule.alpha_bars[t].reshape(shape)
    assert_scaled_close(mean_from_eps(xt, t, eps, schedule), (xt - b / (1 - ab).sqrt() * eps) / a.sqrt())


def test_predict_x0_inverts_q_sample(schedule):
    # q_sample with a known eps, then predict_x0 with that eps gives x_0 back, t = 0..T. Rounding
    # is divided by sqrt(alpha_bar_t), so the error is multiplied back by it before comparing
    T = schedule.T
    g = torch.Generator().manual_seed(3)
    t = torch.arange(0, T + 1)
    x0 = torch.randn(T + 1, 6, generator=g, dtype=F64)
    eps = torch.randn(T + 1, 6, generator=g, dtype=F64)
    xt = q_sample(x0, t, schedule, noise=eps)
    err = (predict_x0(xt, t, eps, schedule) - x0).abs() * schedule.alpha_bars.sqrt()[:, None]
    assert float(err.max()) <= 1e-13
    assert torch.equal(predict_x0(x0, 0, eps, schedule), x0)             # t = 0: x_0 itself


def test_predict_eps_inverts_q_sample(schedule):
    T = schedule.T
    g = torch.Generator().manual_seed(4)
    t = torch.arange(1, T + 1)
    x0 = torch.randn(T, 6, generator=g, dtype=F64)
    eps = torch.randn(T, 6, generator=g, dtype=F64)
    xt = q_sample(x0, t, schedule, noise=eps)
    err = (predict_eps(xt, t, x0, schedule) - eps).abs() * (1 - schedule.alpha_bars[1:]).sqrt()[:, None]
    assert float(err.max()) <= 1e-13
    # predict_x0 and predict_eps are inverse readings of the same eq. (4)
    x0_back = predict_x0(xt, t, predict_eps(xt, t, x0, schedule), schedule)
    err = (x0_back - x0).abs() * schedule.alpha_bars[1:].sqrt()[:, None]
    assert float(err.max()) <= 1e-13


def test_at_t1_the_posterior_is_a_point_mass_at_x0(schedule):
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(4, 3, generator=g, dtype=F64)
    xt = torch.randn(4, 3, generator=g, dtype=F64)
    mean, var = posterior_mean_var(x0, xt, 1, schedule)
    assert torch.equal(var, torch.zeros(4, 1, dtype=F64))
    assert_scaled_close(mean, x0)
    # the eps-form at t = 1 is x0_hat itself
    assert_scaled_close(mean_from_eps(xt, 1, xt, schedule), predict_x0(xt, 1, xt, schedule))


# ------------------------------------------------------------------------------ shapes and t

def test_shapes_and_dtypes():
    schedule = SCHEDULES["linear"]
    x0 = torch.randn(5, 1, 8, 8)                                    # float32 images
    xt = torch.randn(5, 1, 8, 8)
    mean, var = posterior_mean_var(x0, xt, 10, schedule)
    assert mean.shape == (5, 1, 8, 8) and mean.dtype == torch.float32
    assert var.shape == (5, 1, 1, 1) and var.dtype == torch.float32
    assert (mean + var.sqrt() * xt).shape == x0.shape                # var broadcasts against x0
    _, var2 = posterior_mean_var(x0[:, 0, 0], xt[:, 0, 0], 10, schedule)
    assert var2.shape == (5, 1)
    for out in (predict_x0(xt, 10, x0, schedule), predict_eps(xt, 10, x0, schedule),
                mean_from_eps(xt, 10, x0, schedule)):
        assert out.shape == x0.shape and out.dtype == torch.float32


def test_per_sample_t_matches_one_t_at_a_time():
    schedule = SCHEDULES["linear"]
    g = torch.Generator().manual_seed(6)
    B = 16
    t = torch.randint(1, schedule.T + 1, (B,), generator=g)
    x0 = torch.randn(B, 3, generator=g, dtype=F64)
    xt = torch.randn(B, 3, generator=g, dtype=F64)
    mean, var = posterior_mean_var(x0, xt, t, schedule)
    mu_eps = mean_from_eps(xt, t, x0, schedule)
    for i in range(B):
        m_i, v_i = posterior_mean_var(x0[i:i + 1], xt[i:i + 1], int(t[i]), schedule)
        assert_close(mean[i:i + 1], m_i, rtol=0, atol=1e-15)
        assert_close(var[i:i + 1], v_i, rtol=0, atol=1e-18)
        assert_close(mu_eps[i:i + 1], mean_from_eps(xt[i:i + 1], int(t[i]), x0[i:i + 1], schedule),
                     rtol=0, atol=1e-15)
    # a 0-dim integer tensor is one t for the whole batch
    assert_close(posterior_mean_var(x0, xt, torch.tensor(7), schedule)[0],
                 posterior_mean_var(x0, xt, 7, schedule)[0], rtol=0, atol=1e-15)
