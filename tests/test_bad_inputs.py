"""Bad input to the math core gets a clear error: the right exception type and a message that says
what was expected. One row per mistake a student can make; this is the library's one table of them
(schedules and gather, the forward process, the posterior, the ELBO, DDIM, the samplers, the toy
laws). Deterministic; cannot flake.
"""
import math

import pytest
import torch

import diffusion_lib as dl

S = dl.linear_schedule(100, 1e-3, 0.05)
S1000 = dl.linear_schedule()                   # DDPM's schedule, T = 1000
x = torch.zeros(4, 1, 8, 8)
x3 = torch.zeros(3, 1, 8, 8)
t4 = torch.full((4,), 10, dtype=torch.long)
X = torch.zeros(4, 3)                          # a batch of 4 vectors
Y = torch.zeros(4, 3)


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
    ("cosine T < 0", lambda: dl.cosine_schedule(T=-5), ValueError, "positive integer"),
    ("T a float of integer value", lambda: dl.cosine_schedule(T=1000.0), ValueError, "got 1000.0"),
    ("T = True", lambda: dl.linear_schedule(T=True), ValueError, "positive integer"),
    ("beta_start > beta_end", lambda: dl.linear_schedule(10, 0.02, 1e-4), ValueError,
     "beta_start must not exceed beta_end"),
    ("beta_end >= 1", lambda: dl.linear_schedule(10, 1e-4, 1.5), ValueError, "strictly between 0 and 1"),
    ("beta_start = 0", lambda: dl.linear_schedule(10, 0.0, 0.02), ValueError, "strictly between 0 and 1"),
    ("beta_start < 0", lambda: dl.linear_schedule(beta_start=-0.1), ValueError, "strictly between 0 and 1"),
    ("cosine s < 0", lambda: dl.cosine_schedule(10, s=-0.1), ValueError, "cosine offset s"),
    ("cosine max_beta = 1", lambda: dl.cosine_schedule(max_beta=1.0), ValueError, "max_beta"),
    ("betas[0] != 0", lambda: dl.Schedule(torch.tensor([0.1, 0.2])), ValueError, "betas[0] must be 0"),
    ("2-D betas", lambda: dl.Schedule(torch.zeros(2, 3)), ValueError, "1-D array of length T+1"),
    ("betas of length 1", lambda: dl.Schedule(torch.zeros(1)), ValueError, "length T+1 >= 2"),
    ("beta = 1 inside", lambda: dl.Schedule(torch.tensor([0.0, 1.0])), ValueError,
     "betas[1:] must lie strictly between 0 and 1"),
    ("beta = 0 at t >= 1", lambda: dl.Schedule(torch.tensor([0.0, 0.0, 0.5])), ValueError,
     "betas[1:] must lie strictly between 0 and 1"),
    ("beta NaN", lambda: dl.Schedule(torch.tensor([0.0, float("nan")])), ValueError,
     "betas[1:] must lie strictly between 0 and 1"),
    # gather: the one helper for "schedule value at t, broadcast against x"
    ("gather float t", lambda: dl.gather(S1000.betas, 3.0, X), TypeError, "must be an integer time step"),
    ("gather bool t", lambda: dl.gather(S1000.betas, True, X), TypeError, "must be an integer time step"),
    ("gather float tensor t", lambda: dl.gather(S1000.betas, torch.tensor([1.0, 2.0, 3.0, 4.0]), X),
     TypeError, "integer tensor"),
    ("gather t > T", lambda: dl.gather(S1000.betas, 1001, X), ValueError, "must lie in 0..1000, got 1001"),
    ("gather t < 0", lambda: dl.gather(S1000.betas, -1, X), ValueError, "must lie in 0..1000, got -1"),
    ("gather tensor t > T", lambda: dl.gather(S1000.betas, torch.tensor([0, 5, 9, 1001]), X), ValueError,
     "must lie in 0..1000"),
    ("gather t = 0 with lo = 1", lambda: dl.gather(S1000.betas, 0, X, lo=1), ValueError,
     "must lie in 1..1000, got 0"),
    ("gather t wrong batch", lambda: dl.gather(S1000.betas, torch.tensor([1, 2]), X), ValueError,
     "to match the batch"),
    ("gather 2-D t", lambda: dl.gather(S1000.betas, torch.ones(4, 1, dtype=torch.long), X), ValueError,
     "to match the batch"),
    # time steps of the forward process
    ("float t", lambda: dl.q_sample(x, torch.full((4,), 1.0), S, x), TypeError, "integer tensor"),
    ("t a string", lambda: dl.q_sample(x, "10", S, x), TypeError, "integer time step"),
    ("t a Python float", lambda: dl.q_sample(X, 10.0, S1000, Y), TypeError, "must be an integer time step"),
    ("t above T", lambda: dl.q_sample(x, 101, S, x), ValueError, "must lie in 0..100, got 101"),
    ("t = -1", lambda: dl.q_sample(X, -1, S1000, Y), ValueError, "must lie in 0..1000, got -1"),
    ("negative t in a tensor", lambda: dl.q_sample(x, torch.tensor([-1, 0, 0, 0]), S, x), ValueError,
     "must lie in 0..100"),
    ("t above T in a tensor", lambda: dl.q_sample(X, torch.tensor([1, 2, 3, 1001]), S1000, Y), ValueError,
     "must lie in 0..1000"),
    ("t batch mismatch", lambda: dl.q_sample(x, torch.zeros(3, dtype=torch.long), S, x), ValueError,
     "must have shape (4,) to match the batch, got (3,)"),
    ("q_step at t = 0", lambda: dl.q_step(x, 0, S, x), ValueError, "must lie in 1..100, got 0"),
    ("q_step t = 0 in a tensor", lambda: dl.q_step(X, torch.tensor([0, 1, 2, 3]), S1000, Y), ValueError,
     "must lie in 1..1000"),
    ("q_step t above T", lambda: dl.q_step(X, 1001, S1000, Y), ValueError, "must lie in 1..1000"),
    ("q_step t batch mismatch", lambda: dl.q_step(X, torch.ones(5, dtype=torch.long), S1000, Y), ValueError,
     "to match the batch"),
    # shapes and types of the forward process
    ("noise shape mismatch", lambda: dl.q_sample(x, t4, S, x3), ValueError,
     "noise must have the shape of x0 (4, 1, 8, 8), got (3, 1, 8, 8)"),
    ("q_step noise shape mismatch", lambda: dl.q_step(X, 5, S1000, torch.zeros(3, 3)), ValueError,
     "noise must have the shape of x_prev"),
    ("noise missing", lambda: dl.q_sample(X, 5, S1000, None), TypeError, "noise must be a torch.Tensor"),
    ("x0 a list", lambda: dl.q_sample([[0.0]], 1, S, x), TypeError, "x0 must be a torch.Tensor"),
    ("x0 a numpy array", lambda: dl.q_sample(X.numpy(), 5, S1000, Y), TypeError,
     "x0 must be a torch.Tensor, got ndarray"),
    ("integer images", lambda: dl.q_sample(x.long(), 1, S, x), TypeError, "floating-point"),
    ("q_step x_prev a list", lambda: dl.q_step([[0.0] * 3] * 4, 5, S1000, Y), TypeError,
     "x_prev must be a torch.Tensor"),
    # the posterior and the eps-form
    ("posterior at t = 0", lambda: dl.posterior_mean_var(x, x, 0, S), ValueError, "t must lie in 1..100, got 0"),
    ("posterior t = 0 in a tensor", lambda: dl.posterior_mean_var(X, Y, torch.tensor([0, 1, 2, 3]), S1000),
     ValueError, "must lie in 1..1000"),
    ("posterior t above T", lambda: dl.posterior_mean_var(X, Y, 1001, S1000), ValueError,
     "t must lie in 1..1000, got 1001"),
    ("posterior t above T in a tensor", lambda: dl.posterior_mean_var(X, Y, torch.full((4,), 1001), S1000),
     ValueError, "must lie in 1..1000"),
    ("posterior t a float", lambda: dl.posterior_mean_var(X, Y, 2.0, S1000), TypeError,
     "t must be an integer time step"),
    ("posterior t a float tensor", lambda: dl.posterior_mean_var(X, Y, torch.full((4,), 2.0), S1000),
     TypeError, "integer tensor"),
    ("posterior t batch mismatch", lambda: dl.posterior_mean_var(X, Y, torch.ones(3, dtype=torch.long), S1000),
     ValueError, "shape (4,)"),
    ("xt shape mismatch", lambda: dl.posterior_mean_var(x, x3, t4, S), ValueError, "xt must have the shape of x0"),
    ("posterior x0 a list", lambda: dl.posterior_mean_var([[0.0]], Y, 5, S1000), TypeError,
     "x0 must be a torch.Tensor"),
    ("posterior integer x0", lambda: dl.posterior_mean_var(X.long(), Y, 5, S1000), TypeError, "floating-point"),
    ("predict_x0 t = -1", lambda: dl.predict_x0(X, -1, Y, S1000), ValueError, "t must lie in 0..1000, got -1"),
    ("eps shape mismatch", lambda: dl.predict_x0(x, 5, x3, S), ValueError, "eps must have the shape of xt"),
    ("predict_eps t = 0", lambda: dl.predict_eps(X, 0, Y, S1000), ValueError, "t must lie in 1..1000, got 0"),
    ("predict_eps x0 shape mismatch", lambda: dl.predict_eps(X, 5, torch.zeros(2, 3), S1000), ValueError,
     "x0 must have the shape of xt"),
    ("mean_from_eps t = 0", lambda: dl.mean_from_eps(X, 0, Y, S1000), ValueError, "t must lie in 1..1000, got 0"),
    ("mean_from_eps t a float", lambda: dl.mean_from_eps(X, 1.5, Y, S1000), TypeError,
     "t must be an integer time step"),
    # the ELBO and the DDPM step
    ("step_kl at t = 1", lambda: dl.step_kl(x, x, 1, x, 1.0, S), ValueError, "must lie in 2..100"),
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

