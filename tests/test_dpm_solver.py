"""DPM-Solver++ (diffusion_lib/samplers/dpm_solver.py) and the score view it rests on (notebooks/08).

What they check, each against a true value:
- Schedule.lambdas is half the log-SNR, lambda_0 = +inf, decreasing;
- Tweedie's formula and the score identity on Gaussian mixtures (1-D and 2-D): the exact score,
  by autograd of the marginal's closed-form log-density, gives eps* = -sqrt(1 - alpha_bar) score
  (GaussianMixture.optimal_eps) and E[x_0 | x_t] (the per-component posterior means, written here
  independently), which is also predict_x0 of the exact eps*;
- order 1 is deterministic DDIM (ddim_sample, eta = 0) to float precision, step by step and over a
  whole run; the 2M step equals DPM-Solver++'s Algorithm 2 written out here in numpy;
- the convergence order on Gaussian data with the exact eps*: the probability-flow ODE then keeps
  the standardised value (x_t - sqrt(alpha_bar_t) mu) / sqrt(alpha_bar_t s^2 + 1 - alpha_bar_t)
  fixed, so the error at t = 100 is known exactly; its log-log slope against the step count is -1
  for DDIM and -2 for 2M, and a 2M step with a wrong coefficient (1/rho for 1/(2 rho)) loses the order;
- determinism, callback semantics (as in ddim_sample), the log-SNR grid, bad inputs with clear
  errors, and `python -m diffusion_lib sample/evaluate --sampler dpm` end to end on the shipped model.

False failures: none by design. Nothing here is a Monte Carlo estimate: identities are compared in
float64 (or float32 at float32 rounding), and the slopes are fitted to exact errors of a seeded,
deterministic computation, with thresholds (+-0.15 around -1 and -2; a wrong method must miss -2 by
more than 0.5) far from the fitted values. Designed false-failure rate 0 per test and for the module.
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import diffusion_lib as dl
from diffusion_lib.cli import main
from diffusion_lib.samplers.dpm_solver import dpm_solver_step, logsnr_timesteps

F64 = torch.float64
SCHEDULE = dl.linear_schedule()
REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "assets" / "digits.pt"
MIX_1D = dl.GaussianMixture([0.3, 0.7], [[-0.6], [0.5]], [[0.15], [0.25]])
MIX_2D = dl.GaussianMixture([0.2, 0.5, 0.3], [[-0.6, 0.4], [0.5, -0.2], [0.1, 0.8]],
                            [[0.15, 0.3], [0.25, 0.1], [0.05, 0.2]])
MU, SD = torch.tensor([0.5, -0.8], dtype=F64), torch.tensor([0.3, 0.05], dtype=F64)
GAUSS = dl.gaussian(MU, SD)


def _randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---- log-SNR ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [dl.linear_schedule(), dl.cosine_schedule(), dl.scaled_linear_schedule(10)],
                         ids=["linear", "cosine", "T=10"])
def test_lambdas_are_half_the_log_snr(schedule):
    lam, ab = schedule.lambdas, schedule.alpha_bars
    assert lam.dtype == F64 and lam.shape == (schedule.T + 1,)
    assert lam[0] == math.inf
    exact = torch.log(ab[1:].sqrt() / (1 - ab[1:]).sqrt())
    torch.testing.assert_close(lam[1:], exact, rtol=1e-12, atol=1e-12)
    assert bool((lam[1:] < lam[:-1]).all()), "lambda_t must fall as t grows"


# ---- the score, Tweedie's formula --------------------------------------------------------------------

def exact_score(mixture, x, t):
    """grad_x log q_t(x) by autograd of the closed-form log-density of the marginal (float64)."""
    x = x.clone().requires_grad_(True)
    logp = mixture.marginal(t, SCHEDULE).log_prob(x).sum()
    return torch.autograd.grad(logp, x)[0]


def posterior_mean(mixture, x, t):
    """E[x_0 | x_t] for a Gaussian mixture: responsibilities times the per-component Gaussian posterior
    means mu_k + sqrt(ab) s_k^2 / v_k (x - sqrt(ab) mu_k), v_k = ab s_k^2 + 1 - ab (written without toy.py)."""
    ab = float(SCHEDULE.alpha_bars[t])
    w, m, s = (torch.as_tensor(a, dtype=F64) for a in (mixture.weights, mixture.means, mixture.stds))
    v = ab * s ** 2 + 1 - ab                                                     # (K, D)
    xk = x[:, None, :]
    log_r = (torch.log(w)[None, :] - 0.5 * (torch.log(2 * math.pi * v) + (xk - math.sqrt(ab) * m) ** 2 / v).sum(-1))
    r = torch.softmax(log_r, dim=1)[..., None]                                   # (B, K, 1)
    return (r * (m + math.sqrt(ab) * s ** 2 / v * (xk - math.sqrt(ab) * m))).sum(1)


@pytest.mark.parametrize("mixture", [MIX_1D, MIX_2D], ids=["1-D", "2-D"])
@pytest.mark.parametrize("t", [1, 10, 100, 500, 1000])
def test_optimal_eps_is_minus_sqrt_one_minus_alpha_bar_times_the_score(mixture, t):
    x = 1.5 * _randn(t, 64, mixture.dim)
    eps = mixture.optimal_eps(x, t, SCHEDULE)
    torch.testing.assert_close(eps, -SCHEDULE.sqrt_one_minus_alpha_bars[t] * exact_score(mixture, x, t),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mixture", [MIX_1D, MIX_2D], ids=["1-D", "2-D"])
@pytest.mark.parametrize("t", [1, 10, 100, 500, 1000])
def test_tweedie_gives_the_posterior_mean_and_so_does_predict_x0_of_eps_star(mixture, t):
    x = 1.5 * _randn(100 + t, 64, mixture.dim)
    ab = SCHEDULE.alpha_bars[t]
    tweedie = (x + (1 - ab) * exact_score(mixture, x, t)) / ab.sqrt()           # notebooks/08, eq. (1.3)
    truth = posterior_mean(mixture, x, t)
    torch.testing.assert_close(tweedie, truth, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dl.predict_x0(x, t, mixture.optimal_eps(x, t, SCHEDULE), SCHEDULE), truth,
                               rtol=1e-9, atol=1e-9)


def test_the_score_identity_can_fail():
    """The comparison has power: a score off by the factor sqrt(1 - alpha_bar) (eps* itself) is rejected."""
    x = _randn(7, 64, 1)
    eps = MIX_1D.optimal_eps(x, 500, SCHEDULE)
    assert not torch.allclose(eps, -exact_score(MIX_1D, x, 500), rtol=1e-3, atol=1e-3)


# ---- order 1 is DDIM ---------------------------------------------------------------------------------

@pytest.mark.parametrize("t, t_prev", [(1000, 980), (1000, 0), (500, 250), (20, 0), (2, 1), (1, 0)])
def test_first_order_step_is_the_ddim_step(t, t_prev):
    x, x0_hat = _randn(1, 8, 3), _randn(2, 8, 3)
    eps = (x - SCHEDULE.sqrt_alpha_bars[t] * x0_hat) / SCHEDULE.sqrt_one_minus_alpha_bars[t]   # the eps of x0_hat
    torch.testing.assert_close(dpm_solver_step(x, t, t_prev, x0_hat, SCHEDULE),
                               dl.ddim_step(x, t, t_prev, eps, SCHEDULE, eta=0.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 10, 50, 1000])
def test_order_1_equals_deterministic_ddim(steps):
    model = MIX_2D.eps_model(SCHEDULE)
    x_T = _randn(3, 256, 2)
    a = dl.dpm_solver_sample(model, None, SCHEDULE, steps=steps, order=1, x_T=x_T)
    b = dl.ddim_sample(model, None, SCHEDULE, steps=steps, eta=0.0, x_T=x_T)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    a32 = dl.dpm_solver_sample(model, None, SCHEDULE, steps=steps, order=1, x_T=x_T.float())
    b32 = dl.ddim_sample(model, None, SCHEDULE, steps=steps, eta=0.0, x_T=x_T.float())
    assert a32.dtype == torch.float32
    torch.testing.assert_close(a32, b32, rtol=1e-4, atol=1e-5)       # float32 rounding over `steps` steps


@pytest.mark.parametrize("steps", [1, 2])
def test_order_2_with_one_or_two_steps_is_ddim(steps):
    """The first step has no earlier x0_hat and the last step (to 0) is first order: with 2 steps, 2M is DDIM."""
    model, x_T = GAUSS.eps_model(SCHEDULE), _randn(4, 64, 2)
    torch.testing.assert_close(dl.dpm_solver_sample(model, None, SCHEDULE, steps=steps, order=2, x_T=x_T),
                               dl.ddim_sample(model, None, SCHEDULE, steps=steps, x_T=x_T), rtol=1e-12, atol=1e-12)


def algorithm_2_step(x, t, t_prev, x0_hat, x0_hat_last, t_last, alpha_bars):
    """DPM-Solver++(2M), Algorithm 2 of Lu et al. 2022b, in their alpha_t = sqrt(alpha_bar_t),
    sigma_t = sqrt(1 - alpha_bar_t), lambda_t = log(alpha_t / sigma_t); numpy float64."""
    ab = alpha_bars.numpy()
    alpha, sigma = np.sqrt(ab), np.sqrt(1 - ab)
    lam = lambda u: np.log(alpha[u]) - np.log(sigma[u])
    h, h_last = lam(t_prev) - lam(t), lam(t) - lam(t_last)
    r = h_last / h
    D = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_hat_last
    return sigma[t_prev] / sigma[t] * x - alpha[t_prev] * (np.exp(-h) - 1) * D


@pytest.mark.parametrize("t_last, t, t_prev", [(1000, 900, 800), (1000, 980, 960), (300, 200, 100), (40, 20, 1),
                                               (1000, 500, 499), (3, 2, 1)])
def test_2m_step_is_algorithm_2(t_last, t, t_prev):
    x, x0_hat, x0_hat_last = _randn(5, 4, 1, 8, 8), _randn(6, 4, 1, 8, 8), _randn(7, 4, 1, 8, 8)
    got = dpm_solver_step(x, t, t_prev, x0_hat, SCHEDULE, x0_hat_last, t_last)
    expected = algorithm_2_step(x.numpy(), t, t_prev, x0_hat.numpy(), x0_hat_last.numpy(), t_last, SCHEDULE.alpha_bars)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


# ---- the order of convergence on Gaussian data ---------------------------------------------------------

STEPS_ORDER = [20, 40, 80, 160, 320]      # multiples of 10: t = 100 = T (S/10) / S is on every grid
T_FIX = 100


def exact_flow(x_T, t):
    """The probability-flow ODE's exact map from x_T to x_t for x_0 ~ N(MU, SD^2): the standardised value
    (x - sqrt(ab) mu) / sqrt(ab s^2 + 1 - ab) is conserved (the 1-D monotone map between Gaussian marginals)."""
    ab = SCHEDULE.alpha_bars
    z = (x_T - ab[-1].sqrt() * MU) / (ab[-1] * SD ** 2 + 1 - ab[-1]).sqrt()
    return ab[t].sqrt() * MU + (ab[t] * SD ** 2 + 1 - ab[t]).sqrt() * z


def error_at(sampler, steps, x_T):
    kept = {}
    sampler(steps, lambda t_prev, x: kept.__setitem__(t_prev, x))
    return float((kept[T_FIX] - exact_flow(x_T, T_FIX)).abs().max())


def slope(sampler, x_T):
    errors = [error_at(sampler, S, x_T) for S in STEPS_ORDER]
    return float(np.polyfit(np.log(STEPS_ORDER), np.log(errors), 1)[0]), errors


def wrong_2m(model, x_T, steps, callback):
    """2M with 1/rho in place of 1/(2 rho) in D (a coefficient off by 2): the notebook's deliberately wrong version."""
    taus, x, last = dl.ddim_timesteps(SCHEDULE.T, steps), x_T.clone(), None
    for i, t in enumerate(taus):
        t_prev = taus[i + 1] if i + 1 < len(taus) else 0
        x0_hat = dl.predict_x0(x, t, model(x, torch.full((len(x),), t)), SCHEDULE)
        if last is not None and t_prev > 0:
            lam = SCHEDULE.lambdas
            r = float((lam[t] - lam[last[1]]) / (lam[t_prev] - lam[t]))
            x0_used = (1 + 1 / r) * x0_hat - 1 / r * last[0]
        else:
            x0_used = x0_hat
        x = dpm_solver_step(x, t, t_prev, x0_used, SCHEDULE)
        last = (x0_hat, t)
        callback(t_prev, x)
    return x


def test_convergence_slopes_ddim_minus_1_and_2m_minus_2():
    model, x_T = GAUSS.eps_model(SCHEDULE), _randn(8, 2000, 2)
    run = lambda order: (lambda S, cb: dl.dpm_solver_sample(model, None, SCHEDULE, steps=S, order=order, x_T=x_T,
                                                             callback=cb))
    ddim = lambda S, cb: dl.ddim_sample(model, None, SCHEDULE, steps=S, x_T=x_T, callback=cb)
    for name, sampler, target in (("DDIM", ddim, -1.0), ("order 1", run(1), -1.0), ("2M", run(2), -2.0)):
        fitted, errors = slope(sampler, x_T)
        assert abs(fitted - target) < 0.15, f"{name}: slope {fitted:.3f}, expected {target}; errors {errors}"
    _, e1 = slope(run(1), x_T)
    _, e2 = slope(run(2), x_T)
    assert all(b < a / 5 for a, b in zip(e1[1:], e2[1:])), (e1, e2)      # and 2M is the far smaller error


def test_a_wrong_coefficient_breaks_the_slope():
    model, x_T = GAUSS.eps_model(SCHEDULE), _randn(8, 2000, 2)
    fitted, errors = slope(lambda S, cb: wrong_2m(model, x_T, S, cb), x_T)
    assert fitted > -1.5, f"the wrong 2M kept a slope of {fitted:.3f}; the test cannot tell orders apart"
    assert abs(fitted - (-2.0)) > 0.5


# ---- determinism, callback, grids ---------------------------------------------------------------------

def test_deterministic_given_x_T_and_reproducible_from_the_generator():
    model = MIX_2D.eps_model(SCHEDULE)
    x_T = _randn(9, 32, 2)
    a = dl.dpm_solver_sample(model, None, SCHEDULE, steps=15, x_T=x_T, generator=torch.Generator().manual_seed(1))
    b = dl.dpm_solver_sample(model, None, SCHEDULE, steps=15, x_T=x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    draw = lambda seed: dl.dpm_solver_sample(model, (32, 2), SCHEDULE, steps=15,
                                             generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
    assert torch.equal(x_T, _randn(9, 32, 2)), "x_T must not be changed in place"


@pytest.mark.parametrize("order", [1, 2])
def test_callback_after_every_step_as_in_ddim_sample(order):
    model, x_T = MIX_2D.eps_model(SCHEDULE), _randn(10, 16, 2)
    seen, seen_ddim = [], []
    out = dl.dpm_solver_sample(model, None, SCHEDULE, steps=7, order=order, x_T=x_T,
                               callback=lambda t_prev, x: seen.append((t_prev, x.clone())))
    dl.ddim_sample(model, None, SCHEDULE, steps=7, x_T=x_T, callback=lambda t_prev, x: seen_ddim.append(t_prev))
    assert [t for t, _ in seen] == seen_ddim == dl.ddim_timesteps(SCHEDULE.T, 7)[1:] + [0]
    assert torch.equal(seen[-1][1], out) and all(x.shape == x_T.shape for _, x in seen)


def test_one_network_call_per_step():
    calls = []
    model = MIX_1D.eps_model(SCHEDULE)
    dl.dpm_solver_sample(lambda x, t: calls.append(t) or model(x, t), None, SCHEDULE, steps=12, x_T=_randn(11, 8, 1))
    assert len(calls) == 12 and [int(t[0]) for t in calls] == dl.ddim_timesteps(SCHEDULE.T, 12)
    assert all(t.dtype == torch.long and t.shape == (8,) for t in calls)


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 20, 50, 200, 1000])
def test_logsnr_grid_is_a_valid_grid_and_even_in_lambda(steps):
    times = logsnr_timesteps(SCHEDULE, steps)
    assert len(times) == steps and times[0] == SCHEDULE.T and times[-1] >= 1
    assert all(isinstance(t, int) and b < a for t, a, b in zip(times, times, times[1:]))
    if 2 <= steps <= 10:        # gaps in lambda are even where integers allow (near t = 1 they are ~0.4 apart)
        gaps = np.diff(SCHEDULE.lambdas[times].numpy())
        assert gaps.min() > 0.9 * gaps.mean() and gaps.max() < 1.1 * gaps.mean(), gaps
    model, x_T = GAUSS.eps_model(SCHEDULE), _randn(12, 8, 2)
    seen = []
    dl.dpm_solver_sample(model, None, SCHEDULE, steps=steps, x_T=x_T, timesteps=times,
                         callback=lambda t_prev, x: seen.append(t_prev))
    assert seen == times[1:] + [0]


# ---- bad inputs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, text", [
    ({"order": 0}, ValueError, "order must be 1"),
    ({"order": 3}, ValueError, "order must be 1"),
    ({"order": 1.5}, ValueError, "order must be 1"),
    ({"order": True}, ValueError, "order must be 1"),
    ({"order": "2"}, ValueError, "order must be 1"),
    ({"steps": 0}, ValueError, "steps must lie in 1..T = 1..1000, got 0"),
    ({"steps": 1001}, ValueError, "steps must lie in 1..T = 1..1000, got 1001"),
    ({"steps": 2.5}, TypeError, "steps must be an integer"),
    ({"steps": 3, "timesteps": [1000, 500]}, ValueError, "timesteps must be 3"),
    ({"steps": 2, "timesteps": [900, 500]}, ValueError, "from T = 1000"),
    ({"steps": 3, "timesteps": [1000, 500, 500]}, ValueError, "strictly decreasing"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(").replace(".", r"\.")):
        dl.dpm_solver_sample(MIX_1D.eps_model(SCHEDULE), (4, 1), SCHEDULE, **kwargs)


@pytest.mark.parametrize("model", [None, torch.zeros(3), "unet"])
def test_a_model_that_is_not_callable_is_refused(model):
    with pytest.raises(TypeError, match="model must be a callable"):
        dl.dpm_solver_sample(model, (4, 1), SCHEDULE)


def test_bad_steps_are_refused():
    x = _randn(13, 4, 2)
    with pytest.raises(ValueError, match="step to t = 0 must be first order"):
        dpm_solver_step(x, 20, 0, x, SCHEDULE, x, 40)
    with pytest.raises(ValueError, match="t_prev < t"):
        dpm_solver_step(x, 20, 20, x, SCHEDULE)
    with pytest.raises(ValueError, match="t_last"):
        dpm_solver_step(x, 20, 10, x, SCHEDULE, x, 15)
    with pytest.raises(ValueError, match="shape of x_t"):      # a model returning the wrong shape
        dl.dpm_solver_sample(lambda x, t: x[:, :1], (4, 2), SCHEDULE, steps=3)


# ---- the command line ----------------------------------------------------------------------------------

needs_model = pytest.mark.skipif(not DIGITS.is_file(), reason="assets/digits.pt is not in this checkout")


@needs_model
def test_cli_sample_with_dpm_end_to_end(tmp_path):
    out = tmp_path / "dpm.npy"
    p = subprocess.run([sys.executable, "-m", "diffusion_lib", "sample", "--checkpoint", str(DIGITS), "--sampler",
                        "dpm", "--steps", "10", "--order", "2", "-n", "6", "--batch-size", "4", "--seed", "0",
                        "--out", str(out), "--threads", "1", "--no-progress", "--no-fast", "--device", "cpu"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "DPM-Solver++(2M)-10" in p.stdout and str(out) in p.stdout
    x = np.load(out)
    assert x.shape == (6, 1, 8, 8) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    model, schedule, _ = dl.load_model(DIGITS, device="cpu")       # --no-fast: the library's sampler, batch by batch
    g = torch.Generator().manual_seed(0)
    expected = torch.cat([dl.dpm_solver_sample(model, (n, 1, 8, 8), schedule, steps=10, generator=g)
                          for n in (4, 2)]).clamp(-1, 1).numpy()
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-6)


@needs_model
def test_cli_order_1_is_the_ddim_sampler_and_evaluate_takes_dpm(tmp_path, capsys):
    files = {name: tmp_path / f"{name}.npy" for name in ("dpm1", "ddim")}
    common = ["--checkpoint", str(DIGITS), "--steps", "5", "-n", "4", "--seed", "3", "--no-progress", "--no-fast",
              "--device", "cpu"]
    assert main(["sample", "--sampler", "dpm", "--order", "1", "--out", str(files["dpm1"]), *common]) == 0
    assert main(["sample", "--sampler", "ddim", "--out", str(files["ddim"]), *common]) == 0
    np.testing.assert_allclose(np.load(files["dpm1"]), np.load(files["ddim"]), rtol=0, atol=1e-5)
    assert "DPM-Solver++1-5" in capsys.readouterr().out
    assert main(["evaluate", "--sampler", "dpm", "--steps", "5", "-n", "20", "--bpd-images", "2", *common[:2],
                 "--device", "cpu", "--no-progress"]) == 0
    assert "DPM-Solver++(2M)-5" in capsys.readouterr().out


@needs_model
@pytest.mark.parametrize("args, status, text", [
    (["--sampler", "dpm", "--order", "3"], 2, "--order"),
    (["--sampler", "dpm", "--steps", "2000"], 2, "1..T = 1..1000"),
    (["--sampler", "dpm", "--eta", "0.5"], 2, "--eta is a DDIM setting"),
    (["--sampler", "ddim", "--order", "2"], 2, "--order is a DPM-Solver++ setting"),
    (["--sampler", "ddpm", "--order", "2"], 2, "DDIM settings"),
])
def test_cli_bad_dpm_arguments_give_one_line(args, status, text, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(DIGITS), "--out", str(tmp_path / "x.npy"), *args]) == status
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and text in err, err
    assert not (tmp_path / "x.npy").exists()
