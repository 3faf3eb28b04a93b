"""The checks of notebooks 06 (DDIM) and 07 (latent space) as tests, written against the library.

06, sec. 1: DDIM's family of forward processes q_sigma (DDIM eqs. 6-7) has DDPM's marginals
q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) for every eta, also on a sub-sequence
tau of jumps. A DDIM step driven by the *true* noise of x_t, eps = (x_t - sqrt(alpha_bar_t) x_0) /
sqrt(1 - alpha_bar_t), predicts x0_hat = x_0 exactly (eq. 9), so ddim_step then draws from
q_sigma(x_{t_prev} | x_t, x_0) (eq. 7 with sigma from eq. 16). Running that chain down from
x_T ~ q(x_T | x_0) must leave z_t = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t) standard
normal at every visited t. A wrong sigma (eq. 16) or direction coefficient changes Var z_t by far
more than the tolerance.
06, sec. 6: clipping x0_hat changes a deterministic step by exactly
-sqrt(alpha_bar_s) (x0_hat - clip(x0_hat)) (eq. 6.2 of the notebook).
07, sec. 1: the eta = 0 DDIM step is an Euler step of dx_bar = eps d sigma_bar in x_bar = x / sqrt(alpha_bar),
sigma_bar = sqrt((1 - alpha_bar) / alpha_bar) (DDIM eq. 14, sec. 4.3): exact up to rounding.

False failures: 3 etas x 2 time grids x 4 times x 2 moments = 48 Monte Carlo comparisons, each
allowing K_SE = 4.5 standard errors (two-sided rate 6.8e-6): a designed rate below 4e-4 for the
module for a fresh seed; the identities are exact (tolerance 1e-12 in float64). Seeded: a run is
deterministic. The seed sweep (scripts/seed_sweep.py) checks the rate; measured, with the run time:
README, Tests.
"""
import math

import pytest
import torch

import diffusion_lib as dl

K_SE = 4.5
F64 = torch.float64
SCHEDULE = dl.linear_schedule(T=200)         # the marginal property holds for any schedule; T small for speed
N_CHAINS, D = 2000, 64                       # 128,000 values of z per checked time


def true_eps(xt, t, x0, schedule):
    """The noise that took x_0 to x_t: (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    ab = schedule.alpha_bars[t]
    return (xt - ab.sqrt() * x0) / (1 - ab).sqrt()


@pytest.mark.parametrize("grid", ["every step", "10 jumps"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_q_sigma_has_ddpm_marginals(eta, grid):
    T = SCHEDULE.T
    times = list(range(T, 0, -1)) if grid == "every step" else dl.ddim_timesteps(T, 10)
    checked = {times[0], times[1], times[len(times) // 2], times[-1]}
    g = torch.Generator().manual_seed(60)
    x0 = torch.rand(D, generator=g, dtype=F64) * 2 - 1                 # one image of 64 pixels in [-1, 1]
    ab_T = SCHEDULE.alpha_bars[T]
    x = ab_T.sqrt() * x0 + (1 - ab_T).sqrt() * torch.randn(N_CHAINS, D, generator=g, dtype=F64)
    for t, t_prev in zip(times, times[1:]):
        noise = torch.randn(N_CHAINS, D, generator=g, dtype=F64)
        x = dl.ddim_step(x, t, t_prev, true_eps(x, t, x0, SCHEDULE), SCHEDULE, eta=eta, noise=noise)
        if t_prev in checked:
            z = true_eps(x, t_prev, x0, SCHEDULE).flatten()
            n = z.numel()
            mean, var = float(z.mean()), float(z.var())
            assert abs(mean) <= K_SE / math.sqrt(n), (t_prev, mean)
            assert abs(var - 1) <= K_SE * math.sqrt(2 / n), (t_prev, var)   # s.e. of a N(0,1) variance


def test_q_sigma_check_rejects_a_wrong_direction_coefficient():
    """The check above has power. Any sigma keeps the marginals (that is DDIM's point) as long as
    the direction coefficient is sqrt(1 - alpha_bar_s - sigma^2); the common slip of leaving out
    the -sigma^2 (eta = 1, 10 jumps) puts Var z_s at 1 + sigma^2 / (1 - alpha_bar_s), far outside
    the tolerance."""
    T, g = SCHEDULE.T, torch.Generator().manual_seed(61)
    times = dl.ddim_timesteps(T, 10)
    x0 = torch.rand(D, generator=g, dtype=F64) * 2 - 1
    ab = SCHEDULE.alpha_bars
    x = ab[T].sqrt() * x0 + (1 - ab[T]).sqrt() * torch.randn(N_CHAINS, D, generator=g, dtype=F64)
    for t, s in zip(times, times[1:]):
        sigma = dl.ddim_sigma(SCHEDULE, t, s, 1.0, x)
        eps = true_eps(x, t, x0, SCHEDULE)
        x = ab[s].sqrt() * x0 + (1 - ab[s]).sqrt() * eps + sigma * torch.randn(N_CHAINS, D, generator=g, dtype=F64)
    z = true_eps(x, times[-1], x0, SCHEDULE).flatten()
    assert abs(float(z.var()) - 1) > 10 * K_SE * math.sqrt(2 / z.numel()), float(z.var())


@pytest.mark.parametrize("t,s", [(1000, 980), (500, 400), (50, 49), (10, 0)])
def test_clipping_changes_a_step_by_exactly_the_clipped_part_of_x0_hat(t, s):
    schedule, g = dl.linear_schedule(), torch.Generator().manual_seed(62)
    xt = torch.randn(8, 1, 8, 8, generator=g, dtype=F64) * 1.5
    eps = torch.randn(8, 1, 8, 8, generator=g, dtype=F64)
    x0_hat = dl.predict_x0(xt, t, eps, schedule)
    assert bool((x0_hat.abs() > 1).any())                                   # something to clip
    plain = dl.ddim_step(xt, t, s, eps, schedule)
    clipped = dl.ddim_step(xt, t, s, eps, schedule, clip_x0=True)
    expected = plain - schedule.alpha_bars[s].sqrt() * (x0_hat - x0_hat.clamp(-1, 1))
    assert torch.allclose(clipped, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("t,s", [(1000, 980), (1000, 999), (300, 100), (20, 0)])
def test_deterministic_ddim_step_is_an_euler_step_of_the_ode(t, s):
    schedule, g = dl.linear_schedule(), torch.Generator().manual_seed(63)
    xt = torch.randn(8, 64, generator=g, dtype=F64)
    eps = torch.randn(8, 64, generator=g, dtype=F64)
    ab = schedule.alpha_bars
    sigma_bar = lambda k: ((1 - ab[k]) / ab[k]).sqrt()                    # DDIM sec. 4.3
    x_bar_s = xt / ab[t].sqrt() + (sigma_bar(s) - sigma_bar(t)) * eps      # Euler, DDIM eq. (14)
    assert torch.allclose(dl.ddim_step(xt, t, s, eps, schedule), x_bar_s * ab[s].sqrt(), rtol=0, atol=1e-12)
