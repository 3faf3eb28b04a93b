"""Fast twins of two checks of notebook 05 that no other test makes.

1. `ddpm_sample` is DDPM Algorithm 2 as a loop of `ddpm_step` over ONE noise stream: one draw of z
   per step, also at t = 1 (where sigma_1 z is multiplied by zero), so that the stream, and the
   generator's state after sampling, do not depend on the variance choice. Notebook 05, sec. 1.1
   relies on this to compare sigma_t^2 = beta_t and beta_tilde_t "with the same z".
2. The two DDPM variances bracket the true reverse variance of Gaussian data (notebook 05, eq. 1.4):
   beta_tilde_t <= v_t = beta_t m_{t-1} / m_t <= beta_t for data variance s^2 <= 1, with
   v_t = beta_t at s = 1 (DDPM sec. 3.2).

Both are exact (float64, the toy Gaussian oracle as the model): no randomness in the verdict, a
false-failure rate of 0 per test and for the module.
"""
import pytest
import torch

import diffusion_lib as dl

SCHEDULE = dl.linear_schedule()
DATA = dl.gaussian([0.5, -0.8], [0.3, 0.6])


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_sample_is_a_loop_of_ddpm_step_on_one_noise_stream(variance):
    model = DATA.eps_model(SCHEDULE)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_lib, g_loop = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    lib = dl.ddpm_sample(model, None, SCHEDULE, generator=g_lib, x_T=x_T, variance=variance)
    x = x_T.clone()
    for t in range(SCHEDULE.T, 0, -1):                                   # Algorithm 2, lines 2-5
        eps_hat = model(x, torch.full((len(x),), t, dtype=torch.long))
        z = torch.randn(x.shape, generator=g_loop, dtype=x.dtype)        # drawn at t = 1 too
        x = dl.ddpm_step(x, t, eps_hat, SCHEDULE, z, variance)
    assert torch.equal(lib, x)
    assert torch.equal(g_lib.get_state(), g_loop.get_state()), "ddpm_sample drew a different number of z's"


@pytest.mark.parametrize("schedule", [dl.linear_schedule(), dl.cosine_schedule()], ids=["linear", "cosine"])
@pytest.mark.parametrize("s", [0.05, 0.3, 0.7, 1.0])
def test_beta_and_beta_tilde_bracket_the_true_reverse_variance(schedule, s):
    ab, beta = schedule.alpha_bars, schedule.betas
    m = ab * s * s + 1 - ab                                              # Var(x_t) for Var(x_0) = s^2
    v = beta[1:] * m[:-1] / m[1:]                                        # Var(x_{t-1} | x_t), notebook 03 eq. 6.5
    lo, hi = dl.reverse_variance(schedule, "beta_tilde")[1:], dl.reverse_variance(schedule, "beta")[1:]
    assert bool((v >= lo * (1 - 1e-12)).all()) and bool((v <= hi * (1 + 1e-12)).all())
    if s == 1.0:
        torch.testing.assert_close(v, hi, rtol=1e-12, atol=0)
