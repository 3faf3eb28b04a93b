"""The exercise checks (diffusion_lib/exercises*.py), the notebooks' exercise cells, and `make student`.

Every check accepts a right answer (also computed in float32), rejects typical wrong ones (t off
by one, alpha in place of alpha_bar, a missing square root, sigma of the wrong eta, eps taken at
the wrong time, ...) saying how far off they are, says "not attempted" for a stub without raising,
and raises only for a wrong answer marked as a solution; the checks of notebooks 04-07 also name
each typical mistake of FUNCTION_CHECKS (HINTS). The student copy made by scripts/make_student.py holds no solution cell and no solution
text, is valid nbformat, and notebook 01's copy runs top to bottom in FAST mode with every check
saying "not attempted yet"; so do the Exercises sections of the other notebooks' copies (run after
the notebook's first code cell, its imports).

False-failure rate: 0. The checks compare with exact values on fixed, seeded inputs; the
predict-then-check exercises may also print a Monte Carlo measurement, but their verdict compares
the prediction with the exact value only. Runtime: about 50 s of CPU (57-81 s wall, measured on the
shared 2-core machine under contention), most of it running notebook 01's student copy (FAST=1) and
the Exercises sections of the other copies (about 5 s each, mostly kernel start).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from diffusion_lib import linear_schedule, q_sample, simple_loss_weights
from diffusion_lib.course import exercises

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
# Notebooks that end with an Exercises section; add each notebook here when it gets its exercises.
WITH_EXERCISES = ["01_forward_process.ipynb", "02_posterior.ipynb", "03_elbo.ipynb", "04_training.ipynb",
                  "05_ddpm_sampling.ipynb", "06_ddim.ipynb", "07_latent_space.ipynb"]


def stub(*args):
    raise NotImplementedError("your code here")


# ---- right and wrong answers for every function check -------------------------------------------

def alpha_bars(betas):
    return torch.cumprod(1 - betas, 0)


def q_sample_manual(x0, t, s, noise):
    ab = s.alpha_bars[t]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def beta_tilde(s, t):
    return (1 - s.alpha_bars[t - 1]) / (1 - s.alpha_bars[t]) * s.betas[t]


def mu_tilde(x0, xt, t, s):
    ab, ab_prev, a, b = s.alpha_bars[t], s.alpha_bars[t - 1], s.alphas[t], s.betas[t]
    return ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * xt


def skip_variance(s, t, u):
    ab = s.alpha_bars
    return (1 - ab[u]) / (1 - ab[t]) * (1 - ab[t] / ab[u])


def kl_from_variances(m1, lv1, m2, lv2):          # notebooks/03, eq. (2.8), as the notebook writes it
    v1, v2 = lv1.exp(), lv2.exp()
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def weight_beta_tilde(s, t):                      # notebooks/03, eq. (5.5)
    return s.betas[t] / (2 * s.alphas[t] * (1 - s.alpha_bars[t - 1]))


def per_image(values, x):                          # (B,) -> (B, 1, ..., 1)
    return values.reshape(-1, *([1] * (x.ndim - 1)))


def loss_on_batch(model, x0, t, noise, s, ab=None, root=torch.sqrt):   # notebooks/04, eq. (3.1)
    ab = per_image(s.alpha_bars[t] if ab is None else ab, x0)
    return ((noise - model(root(ab) * x0 + root(1 - ab) * noise, t)) ** 2).mean()


def ddpm_step_manual(xt, t, eps, s, noise, variance, a=None, z_at_1=False, sd=torch.sqrt, k=None):  # nb 05, (1.1)-(1.3)
    k = t if k is None else k                      # the index the schedule is read at
    a = s.alphas[k] if a is None else a
    var = s.betas[k] if variance == "beta" else s.beta_tildes[k]
    z = noise if t > 1 or z_at_1 else 0 * noise
    return (xt - s.betas[k] / (1 - s.alpha_bars[k]).sqrt() * eps) / a.sqrt() + sd(var) * z


def sigma_manual(s, t, u, eta, ab=None):          # notebooks/06, eq. (2.3)
    ab = s.alpha_bars if ab is None else ab
    return eta * ((1 - ab[u]) / (1 - ab[t])).sqrt() * (1 - ab[t] / ab[u]).sqrt()


def ddim_step_manual(xt, t, u, eps, s, eta, noise, ab=None, eta_sigma=None, skip_sigma_in_dir=False):  # (2.2)
    ab = s.alpha_bars if ab is None else ab
    sigma = sigma_manual(s, t, u, eta if eta_sigma is None else eta_sigma, ab)
    x0_hat = (xt - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
    direction = (1 - ab[u] - (0 if skip_sigma_in_dir else sigma ** 2)).clamp(min=0).sqrt()
    return ab[u].sqrt() * x0_hat + direction * eps + sigma * noise


def slerp_manual(z0, z1, lam, per_sample=True):   # notebooks/07, eq. (2.2)
    a, b = (z0.flatten(1), z1.flatten(1)) if per_sample else (z0.reshape(1, -1), z1.reshape(1, -1))
    theta = torch.arccos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)))[:, None]
    return ((torch.sin((1 - lam) * theta) * a + torch.sin(lam * theta) * b) / torch.sin(theta)).reshape(z0.shape)


def invert_step(model, x_s, s, t, sch, eps_at=None, x0_at=None, ab=None):   # notebooks/07, eq. (3.1)
    ab = sch.alpha_bars if ab is None else ab
    eps = model(x_s, torch.full((x_s.shape[0],), t if eps_at is None else eps_at))
    u = s if x0_at is None else x0_at
    x0_hat = (x_s - (1 - ab[u]).sqrt() * eps) / ab[u].sqrt()
    return ab[t].sqrt() * x0_hat + (1 - ab[t]).sqrt() * eps


FUNCTION_CHECKS = {
    "alpha_bars": (exercises.check_alpha_bars, alpha_bars, {
        "t off by one": lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]]),
        "betas in place of alphas": lambda b: torch.cumprod(b, 0),
        "a square root": lambda b: torch.cumprod(1 - b, 0).sqrt(),
        "T values, no index 0": lambda b: torch.cumprod(1 - b[1:], 0),
    }),
    "q_sample": (exercises.check_q_sample, lambda x0, t, s, n: q_sample(x0, t, s, n), {
        "t off by one": lambda x0, t, s, n: q_sample(x0, max(t - 1, 0), s, n),
        "alpha in place of alpha_bar": lambda x0, t, s, n: s.alphas[t].sqrt() * x0 + s.betas[t].sqrt() * n,
        "missing sqrt": lambda x0, t, s, n: s.alpha_bars[t] * x0 + (1 - s.alpha_bars[t]) * n,
    }),
    "posterior_variance": (exercises.check_posterior_variance, beta_tilde, {
        "t off by one": lambda s, t: beta_tilde(s, t + 1) if t < s.T else beta_tilde(s, t) * 0.9,
        "alpha in place of alpha_bar": lambda s, t: (1 - s.alphas[t - 1]) / (1 - s.alphas[t]) * s.betas[t],
        "beta_t itself": lambda s, t: s.betas[t],
    }),
    "posterior_mean": (exercises.check_posterior_mean, mu_tilde, {
        "t off by one": lambda x0, xt, t, s: mu_tilde(x0, xt, max(t - 1, 1), s),
        "missing sqrt": lambda x0, xt, t, s: (s.alpha_bars[t - 1] * s.betas[t] * x0 + s.alphas[t]
                                              * (1 - s.alpha_bars[t - 1]) * xt) / (1 - s.alpha_bars[t]),
        "alpha in place of alpha_bar": lambda x0, xt, t, s: (
            s.alphas[t - 1].sqrt() * s.betas[t] * x0 + s.alphas[t].sqrt() * (1 - s.alphas[t - 1]) * xt)
            / (1 - s.alphas[t]),
    }),
    "skip_variance": (exercises.check_skip_variance, skip_variance, {
        "one step's beta_t": lambda s, t, u: (1 - s.alpha_bars[u]) / (1 - s.alpha_bars[t]) * s.betas[t],
        "t off by one": lambda s, t, u: skip_variance(s, t, u + 1) if u + 1 < t else skip_variance(s, t, u) * 2,
        "missing jump factor": lambda s, t, u: (1 - s.alpha_bars[u]) / (1 - s.alpha_bars[t]),
    }),
    "normal_kl": (exercises.check_normal_kl, kl_from_variances, {
        "missing 1/2": lambda m1, l1, m2, l2: 2 * kl_from_variances(m1, l1, m2, l2),
        "arguments swapped": lambda m1, l1, m2, l2: kl_from_variances(m2, l2, m1, l1),
        "missing -1": lambda m1, l1, m2, l2: kl_from_variances(m1, l1, m2, l2) + 0.5,
        "log-variance used as variance": lambda m1, l1, m2, l2: 0.5 * (torch.log(l2) - torch.log(l1)
                                                                       + (l1 + (m1 - m2) ** 2) / l2 - 1),
        "log-variance read as log std": lambda m1, l1, m2, l2: kl_from_variances(m1, 2 * l1, m2, 2 * l2),
        "log std read as log-variance": lambda m1, l1, m2, l2: kl_from_variances(m1, l1 / 2, m2, l2 / 2),
    }),
    "simple_loss_weight": (exercises.check_simple_loss_weight, weight_beta_tilde, {
        "alpha_bar_t for alpha_bar_{t-1}": lambda s, t: s.betas[t] / (2 * s.alphas[t] * (1 - s.alpha_bars[t])),
        "alpha in place of alpha_bar": lambda s, t: s.betas[t] / (2 * s.alphas[t] * (1 - s.alphas[t - 1])),
        "beta_t in place of beta_tilde_t": lambda s, t: simple_loss_weights(s, "beta")[t],
        "t off by one": lambda s, t: weight_beta_tilde(s, t + 1) if t < s.T else weight_beta_tilde(s, t) * 0.9,
        "missing 1/2": lambda s, t: 2 * weight_beta_tilde(s, t),
    }),
    "loss_on_batch": (exercises.check_loss_on_batch, loss_on_batch, {
        "t off by one": lambda m, x0, t, n, s: loss_on_batch(m, x0, t, n, s, ab=s.alpha_bars[t - 1]),
        "alpha in place of alpha_bar": lambda m, x0, t, n, s: loss_on_batch(m, x0, t, n, s, ab=s.alphas[t]),
        "missing sqrt": lambda m, x0, t, n, s: loss_on_batch(m, x0, t, n, s, root=lambda v: v),
        "alpha_bar not broadcast per image": lambda m, x0, t, n, s: (
            (n - m(s.alpha_bars[t].sqrt() * x0 + (1 - s.alpha_bars[t]).sqrt() * n, t)) ** 2).mean(),
        "sum over pixels": lambda m, x0, t, n, s: 64 * loss_on_batch(m, x0, t, n, s),
    }),
    "conv_params": (exercises.check_conv_params, lambda c_in, c_out, k: k * k * c_in * c_out + c_out, {
        "no bias": lambda c_in, c_out, k: k * k * c_in * c_out,
        "k in place of k^2": lambda c_in, c_out, k: k * c_in * c_out + c_out,
        "bias per input channel": lambda c_in, c_out, k: k * k * c_in * c_out + c_in,
    }),
    "ddpm_step": (exercises.check_ddpm_step, ddpm_step_manual, {
        "noise at t = 1": lambda x, t, e, s, n, v: ddpm_step_manual(x, t, e, s, n, v, z_at_1=True),
        "alpha_bar in place of alpha": lambda x, t, e, s, n, v: ddpm_step_manual(x, t, e, s, n, v, a=s.alpha_bars[t]),
        "t off by one": lambda x, t, e, s, n, v: ddpm_step_manual(x, t, e, s, n, v, k=t - 1),
        "variance ignored": lambda x, t, e, s, n, v: ddpm_step_manual(x, t, e, s, n, "beta_tilde"),
        "missing sqrt (sigma^2 as sigma)": lambda x, t, e, s, n, v: ddpm_step_manual(x, t, e, s, n, v, sd=lambda v: v),
    }),
    "ddim_sigma": (exercises.check_ddim_sigma, sigma_manual, {
        "t_prev ignored (the one-step formula)": lambda s, t, u, eta: sigma_manual(s, t, t - 1, eta),
        "alpha in place of alpha_bar": lambda s, t, u, eta: sigma_manual(s, t, u, eta, ab=s.alphas),
        "sigma squared (missing sqrt)": lambda s, t, u, eta: sigma_manual(s, t, u, eta) ** 2,
        "sigma of the wrong eta": lambda s, t, u, eta: sigma_manual(s, t, u, 1.0),
    }),
    "ddim_step": (exercises.check_ddim_step, ddim_step_manual, {
        "sigma of the wrong eta": lambda x, t, u, e, s, eta, n: ddim_step_manual(x, t, u, e, s, eta, n, eta_sigma=1.0),
        "sigma^2 missing in the direction": lambda x, t, u, e, s, eta, n: ddim_step_manual(
            x, t, u, e, s, eta, n, skip_sigma_in_dir=True),
        "alpha in place of alpha_bar": lambda x, t, u, e, s, eta, n: ddim_step_manual(
            x, t, u, e, s, eta, n, ab=s.alphas),
        "t off by one (t - 1 for t_prev)": lambda x, t, u, e, s, eta, n: ddim_step_manual(x, t, t - 1, e, s, eta, n),
    }),
    "slerp": (exercises.check_slerp, slerp_manual, {
        "lerp": lambda z0, z1, lam: (1 - lam) * z0 + lam * z1,
        "endpoints swapped": lambda z0, z1, lam: slerp_manual(z1, z0, lam),
        "one angle for the batch": lambda z0, z1, lam: slerp_manual(z0, z1, lam, per_sample=False),
        "unit vectors": lambda z0, z1, lam: slerp_manual(*(z / z.flatten(1).norm(dim=1)[:, None, None, None]
                                                          for z in (z0, z1)), lam),
    }),
    "invert_step": (exercises.check_invert_step, invert_step, {
        "x0_hat at the wrong time": lambda m, x, s, t, sch: invert_step(m, x, s, t, sch, x0_at=t),
        "alpha in place of alpha_bar": lambda m, x, s, t, sch: invert_step(m, x, s, t, sch, ab=sch.alphas),
        "x_s taken for x_0": lambda m, x, s, t, sch: invert_step(m, x, 0, t, sch),
        "eps at the wrong time (s, except at s = 0)": lambda m, x, s, t, sch: invert_step(m, x, s, t, sch,
                                                                                         eps_at=s or t),
    }),
}


@pytest.mark.parametrize("name", FUNCTION_CHECKS)
def test_check_accepts_the_right_answer(name, capsys):
    check, right, _ = FUNCTION_CHECKS[name]
    result = check(right)
    assert result and result.status == "correct" and result.error <= exercises.TOL
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", FUNCTION_CHECKS)
def test_check_accepts_float32_arithmetic(name):
    check, right, _ = FUNCTION_CHECKS[name]

    def in_float32(*args):
        out = right(*[a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args])
        return torch.as_tensor(out).float()
    assert check(in_float32)


@pytest.mark.parametrize("name,mistake", [(n, m) for n, (_, _, ms) in FUNCTION_CHECKS.items() for m in ms])
def test_check_rejects_a_typical_mistake_and_says_how_far_off(name, mistake, capsys):
    check, _, mistakes = FUNCTION_CHECKS[name]
    result = check(mistakes[mistake])
    out = capsys.readouterr().out
    assert not result and result.status == "not yet"
    assert "not yet" in out and result.error > exercises.TOL
    assert ("max error" in out and "expected" in out and "got" in out) or "shape" in out or "T+1" in out


def test_check_names_the_mistake_it_recognises(capsys):
    exercises.check_q_sample(FUNCTION_CHECKS["q_sample"][2]["missing sqrt"])
    assert "matches the formula without its square roots" in capsys.readouterr().out
    exercises.check_posterior_variance(FUNCTION_CHECKS["posterior_variance"][2]["beta_t itself"])
    assert "matches beta_t" in capsys.readouterr().out
    exercises.check_normal_kl(FUNCTION_CHECKS["normal_kl"][2]["arguments swapped"])
    assert "matches KL(N2 || N1)" in capsys.readouterr().out
    exercises.check_normal_kl(FUNCTION_CHECKS["normal_kl"][2]["log-variance used as variance"])
    assert "has NaNs" in capsys.readouterr().out
    exercises.check_simple_loss_weight(
        FUNCTION_CHECKS["simple_loss_weight"][2]["beta_t in place of beta_tilde_t"])
    assert "matches lambda_t for sigma_t^2 = beta_t" in capsys.readouterr().out


# What the checks of notebooks 04-07 say for each typical mistake of FUNCTION_CHECKS: every one is named.
HINTS = {
    "loss_on_batch": {"t off by one": "t off by one", "alpha in place of alpha_bar": "alpha_t in place of alpha_bar_t",
                      "missing sqrt": "without its square roots", "alpha_bar not broadcast per image": "(B, 1, 1, 1)",
                      "sum over pixels": "D times (3.1)"},
    "conv_params": {"no bias": "bias per output channel is missing", "k in place of k^2": "k in place of k^2",
                    "bias per input channel": "one bias per input channel"},
    "ddpm_step": {"noise at t = 1": "noise added at t = 1",
                  "alpha_bar in place of alpha": "alpha_bar_t in place of alpha_t", "t off by one": "t off by one",
                  "variance ignored": "whatever `variance` says",
                  "missing sqrt (sigma^2 as sigma)": "sigma_t^2 used as sigma_t"},
    "ddim_sigma": {"t_prev ignored (the one-step formula)": "used for a jump",
                   "alpha in place of alpha_bar": "DDIM paper's alpha_t is DDPM's alpha_bar_t",
                   "sigma squared (missing sqrt)": "take the square root", "sigma of the wrong eta": "eta ignored"},
    "ddim_step": {"sigma of the wrong eta": "sigma of eta = 1 whatever eta is",
                  "sigma^2 missing in the direction": "left out of the direction term",
                  "alpha in place of alpha_bar": "DDIM paper's alpha_t is DDPM's alpha_bar_t",
                  "t off by one (t - 1 for t_prev)": "alpha_bar_{t-1} in place of alpha_bar_{t_prev}"},
    "slerp": {"lerp": "the straight line", "endpoints swapped": "swapped", "one angle for the batch": "per sample",
              "unit vectors": "the norms of z0 and z1 are lost"},
    "invert_step": {"x0_hat at the wrong time": "x0_hat computed at t",
                    "alpha in place of alpha_bar": "DDIM paper's alpha_t is DDPM's alpha_bar_t",
                    "x_s taken for x_0": "x_s taken for x_0",
                    "eps at the wrong time (s, except at s = 0)": "not at the target time t"},
}


@pytest.mark.parametrize("name,mistake", [(n, m) for n, hints in HINTS.items() for m in hints])
def test_checks_of_04_to_07_name_every_typical_mistake(name, mistake, capsys):
    check, _, mistakes = FUNCTION_CHECKS[name]
    assert set(HINTS[name]) == set(mistakes)
    assert not check(mistakes[mistake])
    out = capsys.readouterr().out
    assert "Your answer matches" in out and HINTS[name][mistake] in out


def test_a_network_called_at_t_0_is_reported_with_the_reason(capsys):
    """04.1 and 07.3: a network called at t = 0 (the 0-based t; eps taken at the current time s = 0 of an
    inversion step) raises in the check's model; the check reports that, without raising."""
    def zero_based(m, x0, t, n, s):
        ab = per_image(s.alpha_bars[t], x0)
        return ((n - m(ab.sqrt() * x0 + (1 - ab).sqrt() * n, t - 1)) ** 2).mean()
    assert exercises.check_loss_on_batch(zero_based).status == "not yet"
    assert "called at t = 0" in capsys.readouterr().out
    result = exercises.check_invert_step(lambda m, x, s, t, sch: invert_step(m, x, s, t, sch, eps_at=s))
    assert result.status == "not yet" and "evaluates it at the target time t" in capsys.readouterr().out


def test_slerp_check_explains_nans(capsys):
    def unnormalised(z0, z1, lam):                 # arccos of <z0, z1> without dividing by the norms
        a, b = z0.flatten(1), z1.flatten(1)
        theta = torch.arccos((a * b).sum(1))[:, None]
        return ((torch.sin((1 - lam) * theta) * a + torch.sin(lam * theta) * b) / torch.sin(theta)).reshape(z0.shape)
    assert not exercises.check_slerp(unnormalised)
    assert "not divided by |z0| |z1|" in capsys.readouterr().out


def test_error_is_reported_at_the_right_place(capsys):
    """A mistake at a single t is found there, with the expected and the given value."""
    def wrong_at_500(s, t):
        return beta_tilde(s, t) * (1.5 if t == 500 else 1.0)
    result = exercises.check_posterior_variance(wrong_at_500)
    out = capsys.readouterr().out
    s = linear_schedule()
    assert "at t=500" in out and f"{float(s.beta_tildes[500]):.6g}" in out
    assert math.isclose(result.error, 0.5 * float(s.beta_tildes[500] / s.betas[500]), rel_tol=1e-9)


@pytest.mark.parametrize("check", [c for c, _, _ in FUNCTION_CHECKS.values()],
                         ids=list(FUNCTION_CHECKS))
def test_a_stub_is_not_attempted_and_does_not_raise(check, capsys):
    for answer in (stub, lambda *args: None):
        result = check(answer)
        assert result.status == "not attempted" and not result
    assert "not attempted yet" in capsys.readouterr().out


def test_a_crashing_answer_is_reported_not_raised(capsys):
    result = exercises.check_alpha_bars(lambda betas: betas.no_such_method())
    assert result.status == "not yet" and "AttributeError" in capsys.readouterr().out


PREDICTIONS = {
    "unscaled_variance": (exercises.check_unscaled_variance, 4 + 10.05, [1.0, 11.05, 4.0]),
    "variance_ratio": (exercises.check_variance_ratio, 0.4547, [1.0, 2.0, 0.0]),
    # 03.3: lambda_t of the cosine schedule is smallest at t = 497; wrong: the two ends, the linear answer
    "weight_minimum": (exercises.check_weight_minimum, 500, [2, 1000, 350]),
    # 04.3: 1 - 0.999^1000; wrong: all of it, the complement e^-1, a guess of one half
    "ema_share": (exercises.check_ema_share, 1 - math.exp(-1), [1.0, math.exp(-1), 0.5]),
    # 05.2: 1000 / 50 calls; wrong: the same cost, 50, 1000
    "cost_ratio": (exercises.check_cost_ratio, 20, [1, 50, 1000]),
    # 06.3: sigma(1000 -> 980, eta = 1) = 0.574; wrong: DDPM's one step sqrt(beta_tilde_1000), sqrt(sum of the
    # 20 betas) = 0.629, 20 one-step sigmas
    "jump_noise": (exercises.check_jump_noise, 0.574, [0.141, 0.629, 2.82]),
    # 07.2: sqrt(D / 2) = 22.6 for D = 1024; wrong: the shell sqrt(D), half of it, the D = 64 answer
    "midpoint_norm": (exercises.check_midpoint_norm, math.sqrt(512), [32.0, 16.0, 5.66]),
}


@pytest.mark.parametrize("name", PREDICTIONS)
def test_prediction_checks(name, capsys):
    check, right, wrongs = PREDICTIONS[name]
    assert check(right) and check(exercises.solution(right))
    for wrong in wrongs:
        result = check(wrong)
        assert not result and result.status == "not yet" and result.error > 0
    out = capsys.readouterr().out
    assert "off by" in out and ("measured" in out or "the library gives" in out)
    assert check(None).status == "not attempted"
    assert check("a guess").status == "not yet"


def test_a_wrong_solution_raises_and_a_right_one_passes():
    assert exercises.check_alpha_bars(exercises.solution(alpha_bars))
    with pytest.raises(AssertionError, match="reference solution"):
        exercises.check_alpha_bars(exercises.solution(lambda b: torch.cumprod(b, 0)))
    with pytest.raises(AssertionError, match="reference solution"):
        exercises.check_unscaled_variance(exercises.solution(11.05))
    assert exercises.check_normal_kl(exercises.solution(lambda *args: kl_from_variances(*args)))
    with pytest.raises(AssertionError, match="reference solution"):
        exercises.check_simple_loss_weight(
            exercises.solution(lambda s, t: 2 * weight_beta_tilde(s, t)))
    with pytest.raises(AssertionError, match="reference solution"):
        exercises.check_weight_minimum(exercises.solution(350))
    with pytest.raises(TypeError):
        exercises.solution("a string")
    assert exercises.check_ddim_step(exercises.solution(lambda *args: ddim_step_manual(*args)))
    wrong_eta = FUNCTION_CHECKS["ddim_step"][2]["sigma of the wrong eta"]
    with pytest.raises(AssertionError, match="reference solution"):
        exercises.check_ddim_step(exercises.solution(lambda *args: wrong_eta(*args)))
    with pytest.raises(AssertionError, match="reference solution"):
        exercises.check_cost_ratio(exercises.solution(50))
    no_sqrt = FUNCTION_CHECKS["loss_on_batch"][2]["missing sqrt"]
    with pytest.raises(AssertionError, match="reference solution"):
        exercises.check_loss_on_batch(exercises.solution(lambda *args: no_sqrt(*args)))


# ---- the notebooks' exercise cells ---------------------------------------------------------------

def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _is_solution(cell):
    return "solution" in cell.metadata.get("tags", [])


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_notebook_exercises_are_laid_out_stub_solution_check(name):
    cells = _cells(NOTEBOOKS / name)
    checks = [c for c in cells if c.cell_type == "code" and "exercises.check_" in c.source]
    assert 2 <= len(checks) <= 4, f"{name}: {len(checks)} exercise checks, the course wants 2 to 4"
    for i, cell in enumerate(cells):
        if "exercises.solution" in cell.source:
            assert _is_solution(cell), f"{name}: cell {cell.id} marks a solution but is not tagged 'solution'"
        if _is_solution(cell):
            assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, f"{name}: {cell.id} not hidden"
            assert "exercises.solution" in cell.source, f"{name}: {cell.id} does not mark its answer"
            before, after = cells[i - 1], cells[i + 1]
            assert before.cell_type == "code" and not _is_solution(before), f"{name}: no stub before {cell.id}"
            assert "exercises.check_" in after.source, f"{name}: no check right after {cell.id}"
    assert sum(map(_is_solution, cells)) == len(checks)


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_student.py"), "--out", str(out)],
                   check=True, capture_output=True, text=True)
    return out / "notebooks"


def test_student_copy_has_every_notebook_and_no_solution(student_copy):
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in student_copy.glob("*.ipynb")) == [p.name for p in sources]
    for path in sources:
        original, copy = _cells(path), nbformat.read(student_copy / path.name, as_version=4)
        nbformat.validate(copy)
        text = json.dumps(copy)                        # sources, outputs and metadata, all of it
        assert "exercises.solution" not in text and '"solution"' not in text
        assert not any(_is_solution(c) for c in copy.cells)
        assert all(not c.outputs and c.execution_count is None for c in copy.cells if c.cell_type == "code")
        shared = {line.strip() for c in original if not _is_solution(c) for line in c.source.splitlines()}
        body = "\n".join(c.source for c in copy.cells)
        for cell in filter(_is_solution, original):
            for line in cell.source.splitlines():
                if line.strip() and line.strip() not in shared:
                    assert line.strip() not in body, f"{path.name}: solution text left: {line.strip()!r}"
        assert len(copy.cells) == len(original) - sum(map(_is_solution, original))


def test_make_student_refuses_an_untagged_solution(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = exercises.solution(1.0)")])
    nbformat.write(nb, tmp_path / "99_bad.ipynb")
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "make_student.py"), "--out",
                          str(tmp_path / "out"), str(tmp_path / "99_bad.ipynb")], capture_output=True, text=True)
    assert run.returncode != 0 and "not tagged" in run.stderr


def assert_checks_say_not_attempted(nb, name: str) -> None:
    """Every executed check cell of a student copy printed "not attempted yet" (and there are some)."""
    checks = [c for c in nb.cells if c.cell_type == "code" and "exercises.check_" in c.source]
    assert checks, f"{name}: no check cells"
    for cell in checks:
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "not attempted yet" in text, f"{name}: check cell printed {text!r}"


def test_student_copy_of_01_runs_top_to_bottom(student_copy, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("FAST", "1")
    nb = nbformat.read(student_copy / "01_forward_process.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(student_copy)}}).execute()
    assert_checks_say_not_attempted(nb, "01_forward_process.ipynb")
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("name", [n for n in WITH_EXERCISES if n != "01_forward_process.ipynb"])
def test_student_copy_exercises_run(student_copy, name, monkeypatch):
    """The Exercises section of the student copy, after the first code cell (the imports), runs and
    every check says "not attempted yet". The rest of the copy is the repository's notebook, which
    the notebook tests run; an exercise cell that needs more of the notebook fails here (an error)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("FAST", "1")
    nb = nbformat.read(student_copy / name, as_version=4)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                 and c.source.startswith("## ") and "Exercises" in c.source.split("\n")[0])
    nb.cells = [nb.cells[first_code]] + nb.cells[start:]
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(student_copy)}}).execute()
    assert_checks_say_not_attempted(nb, name)
