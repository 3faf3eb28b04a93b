"""The exercise checks of notebooks 01-07 (diffusion_lib/course/exercises/) and the notebooks' exercise cells.

Every check accepts a right answer (also computed in float32), rejects typical wrong ones (t off
by one, alpha in place of alpha_bar, a missing square root, sigma of the wrong eta, eps taken at
the wrong time, ...) saying how far off they are, says "not attempted" for a stub without ever
raising, and names each typical mistake it recognises (HINTS). Each notebook's exercises follow
nbgrader's layout (docs/design.md, sec. 5): an answer cell with a solution region, a graded check
cell ending with the hidden assert; 2-4 per notebook, with a "derive/implement" and a "predict"
among them. Notebooks 08 and 09 have their checks' tests in test_exercises_08.py and _09.py.
tests/test_student_copy.py runs the student copy.

False-failure rate: 0. The checks compare with exact values on fixed, seeded inputs; the
predict-then-check exercises may also print a Monte Carlo measurement, but their verdict compares
the prediction with the exact value only.
"""
from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch

from diffusion_lib import linear_schedule, q_sample, simple_loss_weights
from diffusion_lib.course import exercises
from exercise_checks import assert_accepts, assert_accepts_float32
from test_exercises_08 import FUNCTION_CHECKS as FUNCTION_CHECKS_08

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
# Notebooks that end with an Exercises section; add each notebook here when it gets its exercises.


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


# Every function check of the course, notebook 08's included (its table: tests/test_exercises_08.py).
ALL_FUNCTION_CHECKS = {**FUNCTION_CHECKS, **{f"08 {k}": v for k, v in FUNCTION_CHECKS_08.items()}}


@pytest.mark.parametrize("name", ALL_FUNCTION_CHECKS)
def test_check_accepts_the_right_answer(name, capsys):
    check, right, _ = ALL_FUNCTION_CHECKS[name]
    assert_accepts(check, right, lambda: capsys.readouterr().out)


@pytest.mark.parametrize("name", ALL_FUNCTION_CHECKS)
def test_check_accepts_float32_arithmetic(name):
    check, right, _ = ALL_FUNCTION_CHECKS[name]
    assert_accepts_float32(check, right)


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
    assert "matches gamma_t for sigma_t^2 = beta_t" in capsys.readouterr().out


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


def test_the_fallback_of_04_2_passes_its_check():
    """Notebook 04 runs on exercises.nb04.loss_given_t_and_noise until the student's 04.2 is correct
    (result.use): it has to be right, in float64 and in float32."""
    fallback = exercises.nb04.loss_given_t_and_noise
    assert exercises.check_loss_on_batch(fallback)
    assert exercises.check_loss_on_batch(lambda m, x0, t, n, s: fallback(m, x0.float(), t, n.float(), s))


def test_the_fallbacks_of_06_1_and_06_2_pass_their_checks():
    """Notebook 06 runs on result.use(my_ddim_sigma, fallback=ddim_sigma) and result.use(my_ddim_step,
    fallback=ddim_step): the library functions take the answers' arguments and pass the checks."""
    from diffusion_lib import ddim_sigma, ddim_step
    assert exercises.check_ddim_sigma(ddim_sigma) and exercises.check_ddim_step(ddim_step)


def test_a_network_called_at_t_0_is_reported_with_the_reason(capsys):
    """04.2 and 07.3: a network called at t = 0 (the 0-based t; eps taken at the current time s = 0 of an
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


@pytest.mark.parametrize("check, fallback", [
    (exercises.check_alpha_bars, exercises.nb01.library_alpha_bars),
    (exercises.check_posterior_variance, exercises.nb02.library_posterior_variance),
    (exercises.check_posterior_mean, exercises.nb02.library_posterior_mean)])
def test_the_fallbacks_of_01_and_02_pass_their_checks(check, fallback, capsys):
    """Notebooks 01-02 run on `result.use(my_fn, fallback=...)`: the fallback must be the right answer."""
    assert check(fallback)
    result = check(stub)
    assert result.use(stub, fallback) is fallback and fallback.__name__ in capsys.readouterr().out


PREDICTIONS = {
    "unscaled_variance": (exercises.check_unscaled_variance, 4 + 10.05, [1.0, 11.05, 4.0]),
    "variance_ratio": (exercises.check_variance_ratio, 0.4547, [1.0, 2.0, 0.0]),
    # 03.3: gamma_t of the cosine schedule is smallest at t = 497; wrong: the two ends, the linear answer
    "weight_minimum": (exercises.check_weight_minimum, 500, [2, 1000, 350]),
    # 04.3: 1 - 0.999^1000; wrong: all of it, the complement e^-1, a guess of one half
    "ema_share": (exercises.check_ema_share, 1 - math.exp(-1), [1.0, math.exp(-1), 0.5]),
    # 05.2: Var(x_99 | x_100 = 0) / beta_100 = 1.158 for +-1 data; wrong: beta_t's 1, beta_tilde_t's 0.982, 1/beta_1
    "reverse_variance": (exercises.check_reverse_variance, 1.1575, [1.0, 0.982, 1e4]),
    # 05.3: 1000 / 50 calls; wrong: the same cost, 50, 1000
    "cost_ratio": (exercises.check_cost_ratio, 20, [1, 50, 1000]),
    # 06.3: sigma(1000 -> 980, eta = 1) = 0.574; wrong: DDPM's one step sqrt(beta_tilde_1000), sqrt(sum of the
    # 20 betas) = 0.629, 20 one-step sigmas
    "jump_noise": (exercises.check_jump_noise, 0.574, [0.141, 0.629, 2.82]),
    # 07.1: sqrt(D / 2) = 22.6 for D = 1024; wrong: the shell sqrt(D), half of it, the D = 64 answer
    "midpoint_norm": (exercises.check_midpoint_norm, math.sqrt(512), [32.0, 16.0, 5.66]),
}


@pytest.mark.parametrize("name", PREDICTIONS)
def test_prediction_checks(name, capsys):
    check, right, wrongs = PREDICTIONS[name]
    assert check(right)
    for wrong in wrongs:
        result = check(wrong)
        assert not result and result.status == "not yet" and result.error > 0
    out = capsys.readouterr().out
    assert "off by" in out and ("measured" in out or "the library gives" in out)
    assert check(None).status == "not attempted"
    assert check("a guess").status == "not yet"


# ---- the notebooks' exercise cells (docs/design.md, sec. 5) ---------------------------------------

WITH_EXERCISES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("00"))
HIDDEN = "### BEGIN HIDDEN TESTS\nassert result, result.message\n### END HIDDEN TESTS"


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_every_exercise_is_an_answer_cell_and_a_graded_check(name):
    cells = _cells(NOTEBOOKS / name)
    checks = [(i, c) for i, c in enumerate(cells) if c.cell_type == "code" and "exercises.check_" in c.source]
    assert 2 <= len(checks) <= 4, f"{name}: {len(checks)} exercise checks, the course wants 2 to 4"
    ids = [_nbgrader(c).get("grade_id") for c in cells if _nbgrader(c)]
    assert len(ids) == len(set(ids)), f"{name}: grade_id values repeat: {ids}"
    for i, cell in checks:
        meta = _nbgrader(cell)
        assert meta.get("grade") is True and meta.get("points", 0) > 0 and meta.get("schema_version") == 3, \
            f"{name}: the check cell {cell.id} is not an nbgrader autograder test cell"
        assert cell.source.startswith("result = exercises.check_") and cell.source.endswith(HIDDEN), \
            f"{name}: the check cell {cell.id} does not end with the hidden assert"
        answer = cell.source.split("(", 1)[1].split(")", 1)[0]
        defining = [c for c in cells[:i] if _nbgrader(c).get("solution")
                    and (f"def {answer}(" in c.source or f"{answer} = " in c.source)]
        assert defining, f"{name}: no solution cell above {cell.id} defines {answer}"
        assert "### BEGIN SOLUTION" in defining[-1].source and "### END SOLUTION" in defining[-1].source
    for cell in cells:
        if "BEGIN SOLUTION" in cell.source:
            assert _nbgrader(cell).get("solution") is True, f"{name}: a solution region outside a solution cell"
        assert "exercises.solution" not in cell.source and "solution" not in cell.metadata.get("tags", [])


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_each_notebook_asks_to_derive_and_to_predict(name):
    titles = [c.source.split("\n")[0] for c in _cells(NOTEBOOKS / name)
              if c.cell_type == "markdown" and c.source.startswith("### Exercise")]
    assert any("predict" in t.lower() for t in titles), f"{name}: no predict-then-check exercise: {titles}"
    assert any("implement" in t.lower() or "derive" in t.lower() for t in titles), \
        f"{name}: no derive-and-implement exercise: {titles}"
