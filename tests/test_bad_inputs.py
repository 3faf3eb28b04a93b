"""Bad input to the math core gets a clear error: the right exception type and a message that says
what was expected. One row per mistake a student can make. Deterministic; cannot flake.
"""
import math

import pytest
import torch

import diffusion_lib as dl

S = dl.linear_schedule(100, 1e-3, 0.05)
x = torch.zeros(4, 1, 8, 8)
x3 = torch.zeros(3, 1, 8, 8)
t4 = torch.full((4,), 10, dtype=torch.long)


def eps_wrong_shape(xt, t):
    return xt[:, :, :4]


def eps_nan_at_50(xt, t):
    return torch.full_like(xt, math.nan) if int(t[0]) == 50 else torch.zeros_like(xt)


def eps_returns_numpy(xt, t):
    return xt.numpy()


BAD = [
    # schedules
    ("T = 0", lambda: dl.linear_schedule(0), ValueError, "T must be a positive integer"),
    ("T not an int", lambda: dl.linear_schedule(10.5), ValueError, "T must be a positive integer"),
    ("beta_start > beta_end", lambda: dl.linear_schedule(10, 0.02, 1e-4), ValueError, "must not exceed beta_end"),
    ("beta_end >= 1", lambda: dl.linear_schedule(10, 1e-4, 1.5), ValueError, "strictly between 0 and 1"),
    ("beta_start <= 0", lambda: dl.linear_schedule(10, 0.0, 0.02), ValueError, "strictly between 0 and 1"),
    ("cosine s < 0", lambda: dl.cosine_schedule(10, s=-0.1), ValueError, "offset s"),
    ("betas[0] != 0", lambda: dl.Schedule(torch.tensor([0.1, 0.2])), ValueError, "betas[0] must be 0"),
    ("2-D betas", lambda: dl.Schedule(torch.zeros(2, 3)), ValueError, "1-D array of length T+1"),
    ("beta = 1 inside", lambda: dl.Schedule(torch.tensor([0.0, 1.0])), ValueError, "strictly between 0 and 1"),
    # time steps
    ("float t", lambda: dl.q_sample(x, torch.full((4,), 1.0), S, x), TypeError, "integer tensor"),
    ("t a string", lambda: dl.q_sample(x, "10", S, x), TypeError, "integer time step"),
    ("t above T", lambda: dl.q_sample(x, 101, S, x), ValueError, "must lie in 0..100"),
    ("negative t", lambda: dl.q_sample(x, torch.tensor([-1, 0, 0, 0]), S, x), ValueError, "must lie in 0..100"),
    ("t batch mismatch", lambda: dl.q_sample(x, torch.zeros(3, dtype=torch.long), S, x), ValueError, "shape (4,)"),
    ("q_step at t = 0", lambda: dl.q_step(x, 0, S, x), ValueError, "must lie in 1..100"),
    ("posterior at t = 0", lambda: dl.posterior_mean_var(x, x, 0, S), ValueError, "must lie in 1..100"),
    ("step_kl at t = 1", lambda: dl.step_kl(x, x, 1, x, 1.0, S), ValueError, "must lie in 2..100"),
    # shapes and types
    ("noise shape mismatch", lambda: dl.q_sample(x, t4, S, x3), ValueError, "noise must have the shape of x0"),
    ("xt shape mismatch", lambda: dl.posterior_mean_var(x, x3, t4, S), ValueError, "xt must have the shape"),
    ("x0 a list", lambda: dl.q_sample([[0.0]], 1, S, x), TypeError, "x0 must be a torch.Tensor"),
    ("integer images", lambda: dl.q_sample(x.long(), 1, S, x), TypeError, "floating-point"),
    ("eps shape mismatch", lambda: dl.predict_x0(x, 5, x3, S), ValueError, "eps must have the shape"),
    ("ddpm noise missing", lambda: dl.ddpm_step(x, 5, x, S, None), TypeError, "noise must be a torch.Tensor"),
    ("unknown variance", lambda: dl.ddpm_step(x, 5, x, S, x, variance="small"), ValueError, "variance must be one of"),
    ("levels = 1", lambda: dl.discretized_gaussian_log_likelihood(x, x, 0.0, levels=1), ValueError, "levels must be an integer >= 2"),
    ("slerp lam shape", lambda: dl.slerp(x, x, torch.zeros(3)), ValueError, "lam must be a number or a tensor of shape (4,)"),
    # DDIM
    ("steps > T", lambda: dl.ddim_timesteps(100, 101), ValueError, "steps must lie in 1..T = 1..100"),
    ("steps = 0", lambda: dl.ddim_timesteps(100, 0), ValueError, "steps must lie in 1..T"),
    ("steps a float", lambda: dl.ddim_timesteps(100, 10.0), TypeError, "steps must be an integer"),
    ("eta < 0", lambda: dl.ddim_step(x, 10, 5, x, S, eta=-0.1), ValueError, "eta must be a number >= 0"),
    ("eta > 0 without noise", lambda: dl.ddim_step(x, 10, 5, x, S, eta=0.5), ValueError, "pass noise"),
    ("t_prev not below t", lambda: dl.ddim_step(x, 10, 10, x, S), ValueError, "t_prev must be smaller than t"),
    ("t_prev above T", lambda: dl.ddim_step(x, 10, 101, x, S), ValueError, "t_prev must lie in 0..100"),
    ("eta too large", lambda: dl.ddim_step(x, 50, 49, x, S, eta=50.0, noise=x), ValueError, "too large"),
    ("ddim_sample eta < 0", lambda: dl.ddim_sample(eps_wrong_shape, (4, 1, 8, 8), S, eta=-1), ValueError, "eta must be"),
    # samplers and models
    ("model returns wrong shape", lambda: dl.ddim_sample(eps_wrong_shape, (4, 1, 8, 8), S, steps=5),
     ValueError, "shape of x_t (4, 1, 8, 8), got (4, 1, 4, 8) at t=100"),
    ("model returns NaN", lambda: dl.ddim_sample(eps_nan_at_50, (4, 1, 8, 8), S, steps=100),
     ValueError, "NaN or infinite values at t=50"),
    ("model returns numpy", lambda: dl.ddpm_sample(eps_returns_numpy, (4, 1, 8, 8), S), ValueError, "got ndarray"),
    ("non-finite x_T", lambda: dl.ddpm_sample(eps_wrong_shape, None, S, x_T=torch.full((2, 3), math.inf)),
     ValueError, "x_T contains NaN"),
    ("shape and x_T disagree", lambda: dl.ddim_sample(eps_wrong_shape, (4, 3), S, x_T=torch.zeros(2, 3)),
     ValueError, "x_T has shape (2, 3)"),
    ("bad shape", lambda: dl.ddpm_sample(eps_wrong_shape, (4, -1), S), ValueError, "tuple of positive ints"),
    ("generator on another device", lambda: dl.ddpm_sample(eps_wrong_shape, (4, 3), S, device="meta",
                                                           generator=torch.Generator()),
     ValueError, "the generator lives on cpu"),
    # toy oracles
    ("mixture weights", lambda: dl.GaussianMixture([0.5, 0.6], [[0.0], [1.0]], [[1.0], [1.0]]), ValueError, "sum to 1"),
    ("mixture stds", lambda: dl.GaussianMixture([1.0], [[0.0]], [[0.0]]), ValueError, "stds must be positive"),
]


@pytest.mark.parametrize("call, exc, fragment", [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_input_raises_a_clear_error(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"message was: {info.value}"


def test_the_table_is_large():
    assert len(BAD) >= 30
