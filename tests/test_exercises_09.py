"""The exercise checks of notebook 09 (diffusion_lib/course/exercises/nb09.py).

Every check accepts the right answer (the function one also computed in float32), rejects each typical
mistake naming it and saying how far off it is, says "not attempted" for a stub without raising, and
reports a crashing or non-numeric answer instead of raising. The values the checks compare with are the
library's (`guided` on the exact denoiser of a Gaussian mixture); the midpoint value is also checked
against its closed form, and the prediction's reference against its meaning (guidance shrinks the spread).

False-failure rate: 0 (deterministic: fixed inputs, quantile codes, no Monte Carlo).
"""
import math

import pytest
import torch

from diffusion_lib import linear_schedule
from diffusion_lib.course import exercises
from diffusion_lib.course.exercises.nb09 import guided_std_ratio, midpoint_guided_eps


def right(c, u, w):
    return (1 + w) * c - w * u


GUIDED_MISTAKES = {                                # answer -> text the check's hint must contain
    "scale convention": (lambda c, u, w: u + w * (c - u), "the scale convention"),
    "swapped": (lambda c, u, w: (1 + w) * u - w * c, "swapped"),
    "missing eps_c": (lambda c, u, w: w * (c - u), "conditional eps itself is missing"),
    "plus sign": (lambda c, u, w: (1 + w) * c + w * u, "must be subtracted"),
}


def test_guided_eps_check_accepts_the_formula_also_in_float32(capsys):
    assert exercises.check_guided_eps(right)
    assert exercises.check_guided_eps(lambda c, u, w: right(c.float(), u.float(), w))
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", GUIDED_MISTAKES)
def test_guided_eps_check_names_each_typical_mistake(name, capsys):
    answer, hint = GUIDED_MISTAKES[name]
    result = exercises.check_guided_eps(answer)
    out = capsys.readouterr().out
    assert not result and result.status == "not yet" and result.error > exercises.TOL
    assert "max error" in out and "Your answer matches" in out and hint in out


def test_midpoint_value_is_the_closed_form():
    ab = float(linear_schedule().alpha_bars[500])
    for w in (0.0, 2.0, 5.0):                     # eps_tilde(0) = -(1 + w) sqrt(alpha_bar (1 - alpha_bar)) * 2
        assert math.isclose(midpoint_guided_eps(500, w), -(1 + w) * math.sqrt(ab * (1 - ab)) * 2, rel_tol=1e-12)


def test_midpoint_check(capsys):
    ab = float(linear_schedule().alpha_bars[500])
    root = math.sqrt(ab * (1 - ab))
    assert exercises.check_midpoint_eps(-3 * root * 2)
    assert exercises.check_midpoint_eps(torch.tensor(-3 * root * 2, dtype=torch.float32))
    for wrong, hint in ((-root * 2, "conditional eps alone"), (-2 * root * 2, "scale convention"),
                        (3 * root * 2, "the sign"), (-3 * ab * math.sqrt(1 - ab) * 2, "alpha_bar_t in place")):
        result = exercises.check_midpoint_eps(wrong)
        assert not result and hint in capsys.readouterr().out
    assert exercises.check_midpoint_eps(None).status == "not attempted"
    assert exercises.check_midpoint_eps("a guess").status == "not yet"
    assert exercises.check_midpoint_eps([1.0, 2.0]).status == "not yet"


def test_diversity_prediction_check(capsys):
    exact = guided_std_ratio()
    assert 0 < exact < 1                          # guidance shrinks the spread of the class (notebooks/09, sec. 2.3)
    for ok in (exact, 0.6 * exact, 1.9 * exact, 0.5):
        assert exercises.check_guided_diversity(ok), ok
    for wrong in (1.0, 2.0, exact / 2.5):          # unchanged, wider, far too narrow
        result = exercises.check_guided_diversity(wrong)
        assert not result and result.status == "not yet"
    out = capsys.readouterr().out
    assert "the library gives" in out and "off by a factor" in out
    assert exercises.check_guided_diversity(None).status == "not attempted"
    for bad in ("half", -0.5, 0, True):
        assert exercises.check_guided_diversity(bad).status == "not yet"


def test_stubs_and_crashes_are_reported_not_raised(capsys):
    def stub(*args):
        raise NotImplementedError
    for answer in (stub, lambda *args: None):
        assert exercises.check_guided_eps(answer).status == "not attempted"
    result = exercises.check_guided_eps(lambda c, u, w: c.no_such_method())
    assert result.status == "not yet" and "AttributeError" in capsys.readouterr().out

