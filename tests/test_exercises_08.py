"""The exercise checks of notebook 08 (diffusion_lib/course/exercises/nb08.py).

Every check accepts a right answer, written here from the notebook's formulas (also computed in
float32; those two tests run from tests/test_exercises.py with every other function check), rejects each typical mistake it names, saying how far off it is and naming it, says "not
attempted" for a stub without raising, and reports a crashing answer instead of raising. The
prediction check accepts the second-order answer 4 and rejects the first-order 2, the third-order 8
and the inverted 1/4. The notebook's exercise cells are checked by tests/test_exercises.py (nbgrader
layout) and tests/test_student_copy.py.

False-failure rate: 0. The checks compare with exact values on fixed, seeded inputs; the
prediction's reference is a deterministic computation (an exact error on Gaussian data).
"""
from __future__ import annotations

import math

import pytest
import torch

from diffusion_lib.course import exercises
from diffusion_lib.course.exercises import nb08


def stub(*args):
    raise NotImplementedError("your code here")


# ---- right and wrong answers, written from the notebook's equations -------------------------------------

def tweedie(xt, t, schedule, mu, s, variance=None, ab=None, divide=True):      # notebooks/08, eqs. (1.3), (1.6)
    ab = schedule.alpha_bars[t] if ab is None else ab
    v = ab * s ** 2 + 1 - ab if variance is None else variance(ab, s)
    score = -(xt - ab.sqrt() * mu) / v
    out = xt + (1 - ab) * score
    return out / ab.sqrt() if divide else out


def two_m_step(xt, t, t_prev, x0_hat, schedule, x0_hat_last, t_last, factor=0.5, r_of=None, ab=None,
               use_last=True, swap=False):                                       # notebooks/08, eqs. (4.6), (4.8)
    ab = schedule.alpha_bars if ab is None else ab
    lam = lambda u: 0.5 * (torch.log(ab[u]) - torch.log(1 - ab[u]))
    h, h_last = lam(t_prev) - lam(t), lam(t) - lam(t_last)
    r = h_last / h if r_of is None else r_of(h, h_last, t_last, t, t_prev)
    a, b = (x0_hat_last, x0_hat) if swap else (x0_hat, x0_hat_last)
    D = (1 + factor / r) * a - factor / r * b if use_last else x0_hat
    sigma_ratio = ((1 - ab[t_prev]) / (1 - ab[t])).sqrt()
    return sigma_ratio * xt + ab[t_prev].sqrt() * (1 - torch.exp(-h)) * D


FUNCTION_CHECKS = {
    "tweedie": (exercises.check_tweedie_gaussian, tweedie, {
        "the score left out": (lambda xt, t, s, mu, sd: xt / s.alpha_bars[t].sqrt(), "score term"),
        "not divided by sqrt(alpha_bar)": (lambda xt, t, s, mu, sd: tweedie(xt, t, s, mu, sd, divide=False),
                                           "not divided by sqrt(alpha_bar_t)"),
        "the score of q(x_t | x_0 = mu)": (lambda xt, t, s, mu, sd: tweedie(xt, t, s, mu, sd,
                                                                             variance=lambda ab, sd: 1 - ab),
                                           "q(x_t | x_0 = mu)"),
        "sigma_data for sigma_data^2": (lambda xt, t, s, mu, sd: tweedie(xt, t, s, mu, sd,
                                                                         variance=lambda ab, sd: ab * sd + 1 - ab),
                                        "sigma_data in place of sigma_data^2"),
        "alpha for alpha_bar": (lambda xt, t, s, mu, sd: tweedie(xt, t, s, mu, sd, ab=s.alphas[t]),
                                "DDIM paper's alpha_t is DDPM's alpha_bar_t"),
    }),
    "dpm_2m_step": (exercises.check_dpm_2m_step, two_m_step, {
        "first order": (lambda *a: two_m_step(*a, use_last=False), "x0_hat_last is not used"),
        "1/rho for 1/(2 rho)": (lambda *a: two_m_step(*a, factor=1.0), "1/rho in place of 1/(2 rho)"),
        "rho upside down": (lambda *a: two_m_step(*a, r_of=lambda h, hl, *_: h / hl), "rho upside down"),
        "r in t": (lambda *a: two_m_step(*a, r_of=lambda h, hl, tl, t, u: (tl - t) / (t - u)), "measured in t"),
        "swapped": (lambda *a: two_m_step(*a, swap=True), "swapped"),
        "alpha for alpha_bar": (lambda *a: two_m_step(*a, ab=a[4].alphas),
                                "DDIM paper's alpha_t is DDPM's alpha_bar_t"),
    }),
}


@pytest.mark.parametrize("name,mistake", [(n, m) for n, (_, _, ms) in FUNCTION_CHECKS.items() for m in ms])
def test_check_rejects_each_typical_mistake_and_names_it(name, mistake, capsys):
    check, _, mistakes = FUNCTION_CHECKS[name]
    wrong, hint = mistakes[mistake]
    result = check(wrong)
    out = capsys.readouterr().out
    assert not result and result.status == "not yet" and result.error > exercises.TOL
    assert "max error" in out and "expected" in out and "got" in out
    assert "Your answer matches" in out and hint in out, out


@pytest.mark.parametrize("name", FUNCTION_CHECKS)
def test_a_stub_is_not_attempted_and_does_not_raise(name, capsys):
    check = FUNCTION_CHECKS[name][0]
    for answer in (stub, lambda *args: None):
        result = check(answer)
        assert result.status == "not attempted" and not result
    assert "not attempted yet" in capsys.readouterr().out


def test_a_crashing_answer_is_reported_not_raised(capsys):
    result = exercises.check_dpm_2m_step(lambda *args: args[0].no_such_method())
    assert result.status == "not yet" and "AttributeError" in capsys.readouterr().out



def test_error_ratio_prediction(capsys):
    ratio = nb08.solver_error(2, 50) / nb08.solver_error(2, 100)
    assert 3.0 <= ratio <= 5.0, ratio                     # second order: about 2^2 (the check's true value)
    assert 1.8 <= nb08.solver_error(1, 50) / nb08.solver_error(1, 100) <= 2.2     # first order: about 2
    assert exercises.check_error_ratio(4.0)
    for wrong in (2.0, 8.0, 0.25):
        result = exercises.check_error_ratio(wrong)
        assert not result and result.status == "not yet" and result.error > 0
    out = capsys.readouterr().out
    assert "off by" in out and "the library gives" in out
    assert exercises.check_error_ratio(None).status == "not attempted"
    assert exercises.check_error_ratio("a guess").status == "not yet"


def test_error_of_the_exact_solver_is_tiny():
    """solver_error measures against the exact flow: with 1000 steps 2M is within 1e-5 of it (the oracle is right)."""
    assert nb08.solver_error(2, 1000) < 1e-5 and math.isfinite(nb08.solver_error(1, 10))
