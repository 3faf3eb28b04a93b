"""The machinery behind every exercise check (one module per notebook beside this one).

A check calls the student's answer through `_call`, compares it with the library through
`_compare` (functions) or `_predict` (numbers), and reports through `_run`, which prints
"correct", "not yet: ..." or "not attempted yet" and returns a Result. A check never raises for a
student's answer: the student copy runs top to bottom whatever the answers are. The teacher's
notebook asserts the Result in a hidden test (docs/design.md, sec. 5), so a wrong solution fails
there, and nbgrader's autograder scores with the same assert.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from ...process.schedules import Schedule, cosine_schedule, linear_schedule

TOL = 1e-6      # error relative to the size of the values: float32 arithmetic passes, a wrong formula fails
TS = (1, 2, 3, 10, 100, 500, 999, 1000)      # the time steps the checks visit when T = 1000


@dataclass(frozen=True)
class Result:
    """What a check found: status "correct", "not yet" or "not attempted"; error: how far off."""

    status: str
    message: str
    error: float | None = None

    def __bool__(self) -> bool:
        return self.status == "correct"

    def __str__(self) -> str:
        return self.message

    def _ipython_display_(self):        # the check has printed the message already
        pass

    def use(self, answer, fallback):
        """`answer` once this check found it correct, else `fallback` (the library's function), so the
        rest of a notebook runs on whichever works; says which one it will use."""
        if self:
            return answer
        print(f"  (the rest of this notebook uses {_name(fallback)} until {_name(answer)} is correct)")
        return fallback


def _name(obj) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


class _NotAttempted(Exception):     # the answer is still the stub
    pass


class _StudentError(Exception):     # the student's code raised, or returned no number or tensor
    pass


def _call(fn, *args) -> torch.Tensor:
    """The student's fn(*args) on copies of the inputs, as float64; a stub means "not attempted"."""
    try:
        out = fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
    except NotImplementedError:
        raise _NotAttempted from None
    except Exception as e:                                   # the student's bug, not the check's
        raise _StudentError(f"your function raised {type(e).__name__}: {e}") from e
    if out is None or out is Ellipsis:
        raise _NotAttempted
    try:
        return torch.as_tensor(out, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise _StudentError(f"expected a number or a tensor, got {type(out).__name__}") from None


def _run(label: str, answer, body) -> Result:
    """body() -> (status, message, error). Print the verdict and return it; never raises for an answer."""
    try:
        if answer is None or answer is Ellipsis:
            raise _NotAttempted
        status, message, error = body()
    except _NotAttempted:
        status, message, error = ("not attempted", "not attempted yet: put your answer in the "
                                  "cell above, run it, then run this check again", None)
    except _StudentError as e:
        status, message, error = "not yet", f"not yet: {e}", math.inf
    result = Result(status, f"{label}: {message}", error)
    print(result.message)
    return result


def _matches(got: torch.Tensor, mistake: torch.Tensor, scale) -> bool:
    """Does the answer equal a typical mistake everywhere (relative 1e-5; equal infs and NaNs agree)?"""
    mistake = mistake.double().expand_as(got)
    near = (got - mistake).abs() <= 1e-5 * (scale + mistake.abs())
    return bool((near | (got == mistake) | (got.isnan() & mistake.isnan())).all())


def _compare(cases) -> tuple:
    """cases: (where, got, expected, scale, mistakes); `where` may hold "{i}", the worst element.

    Correct when |got - expected| <= TOL * scale everywhere (scale: a number, or a tensor of
    expected's shape). Otherwise report the worst element and every typical mistake
    ({description: its values}) that the answer matches in all cases.
    """
    worst, matches = (-1.0, None), None
    for where, got, expected, scale, mistakes in cases:
        got = got.reshape(expected.shape) if got.numel() == expected.numel() == 1 else got
        if got.shape != expected.shape:
            return ("not yet", f"not yet: at {where.format(i='...')} expected shape "
                               f"{tuple(expected.shape)}, got {tuple(got.shape)}", math.inf)
        err = ((got - expected).abs() / scale).nan_to_num(nan=math.inf).flatten()
        i = int(err.argmax())
        if float(err[i]) > worst[0]:
            worst = (float(err[i]), where.format(i=i), float(expected.flatten()[i]), float(got.flatten()[i]))
        same = {k for k, v in mistakes.items() if _matches(got, v, scale)}
        matches = same if matches is None else matches & same
    err, where, a, b = worst
    if err <= TOL:
        return "correct", f"correct (largest error {err:.1e}, relative to the size of the values)", err
    hints = "".join(f". Your answer matches {k}" for k in mistakes if k in matches)
    return "not yet", f"not yet: max error {abs(b - a):.3g} at {where} (expected {a:.6g}, got {b:.6g}){hints}", err


def _predict(label, prediction, exact, measure, tol, what, explain) -> Result:
    """Predict-then-check: correct when |prediction - exact| <= tol |exact|.

    measure() -> (value, s.e.): a seeded Monte Carlo measurement printed next to the exact value;
    measure=None when the exact value is itself what the library computes (printed as such).
    """
    def body():
        if isinstance(prediction, bool) or not isinstance(prediction, numbers.Real):
            raise _StudentError(f"expected a number, got {prediction!r}")
        off = float(prediction) - exact
        ok = abs(off) <= tol * abs(exact)
        head = f"correct (within {tol:.0%})" if ok else f"not yet: off by {off:+.3g} ({off / exact:+.0%})"
        if measure is None:
            found = f"the library gives {what} = {exact:.4g}"
        else:
            measured, se = measure()
            found = f"measured {what} = {measured:.4g} +- {se:.2g} (1 s.e.); exact {exact:.4g}"
        return ("correct" if ok else "not yet",
                f"{head}. You predicted {float(prediction):.4g}; {found}. {explain}", abs(off))
    return _run(label, prediction, body)


def _test_schedules():
    g = torch.Generator().manual_seed(0)
    betas = torch.cat([torch.zeros(1), 0.01 + 0.2 * torch.rand(10, generator=g, dtype=torch.float64)])
    return [linear_schedule(), cosine_schedule(), Schedule(betas, name="random, T = 10")]


F64 = torch.float64
ALPHA_MIX = "DDPM's alpha_t in place of alpha_bar_t: the DDIM paper's alpha_t is DDPM's alpha_bar_t"


def _randn(g, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64)


def _alphas_as_alpha_bars(s: Schedule) -> Schedule:
    """A schedule whose alpha_bar_t is s's alpha_t (which must decrease): the library then makes ALPHA_MIX."""
    return Schedule(torch.cat([torch.zeros(1, dtype=F64), 1 - s.alphas[1:] / s.alphas[:-1]]), name="alphas")
