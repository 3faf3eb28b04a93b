"""Checks for the exercises of notebook 09 (classifier-free guidance). The library is the oracle: `guided`
on the exact class-conditional denoiser of a Gaussian mixture (GaussianMixture.class_eps_model)."""
from __future__ import annotations

import math

import torch
from scipy import stats

from ...data.toy import GaussianMixture
from ...process.schedules import linear_schedule
from ...samplers.ddim import ddim_sample
from ...samplers.guidance import guided
from .grading import F64, Result, _call, _compare, _randn, _run, _StudentError

# notebooks/09, sec. 2: class 0 = the components at -2 and -0.3, class 1 = those at 1 and 2.2
SEC2_MIXTURE = GaussianMixture([0.25] * 4, [[-2.0], [-0.3], [1.0], [2.2]], [[0.35], [0.35], [0.35], [0.5]])
SEC2_CLASSES = [0, 0, 1, 1]
# Exercise 09.3: two classes, N(-2, 1) and N(+2, 1), equal weights
TWO_CLASSES = GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [[1.0], [1.0]])


def check_guided_eps(my_guided_eps) -> Result:
    """Exercise 09.1: my_guided_eps(eps_cond, eps_uncond, w) -> (1 + w) eps_cond - w eps_uncond.
    Ho & Salimans 2022, eq. (6); notebooks/09, eq. (1.6). On (4, 1, 4, 4) float64 tensors, w in {0, 0.5, 2, 7.5};
    errors relative to the size of the terms."""
    g = torch.Generator().manual_seed(90)
    e_c, e_u = _randn(g, 4, 1, 4, 4), _randn(g, 4, 1, 4, 4)

    def cases():
        for w in (0.0, 0.5, 2.0, 7.5):
            exact = (1 + w) * e_c - w * e_u
            yield (f"w={w}", _call(my_guided_eps, e_c, e_u, w), exact, 1 + (1 + w) * e_c.abs() + w * e_u.abs(), {
                "the scale convention: eps_u + w (eps_c - eps_u) is (1 + w) eps_c - w eps_u only when the scale "
                "s = 1 + w is called w (eq. 1.6 uses w; s = 1 + w is diffusers' guidance_scale)":
                    e_u + w * (e_c - e_u),
                "the two eps swapped: (1 + w) eps(null) - w eps(c) pushes away from the class": (1 + w) * e_u - w * e_c,
                "only the classifier's part w (eps_c - eps_u): the conditional eps itself is missing":
                    w * (e_c - e_u),
                "a plus sign: the unconditional eps must be subtracted": (1 + w) * e_c + w * e_u})
    return _run("Exercise 09.1 the guided eps", my_guided_eps, lambda: _compare(list(cases())))


def guided_std_ratio(c: int = 1, w: float = 4.0, n: int = 2000, steps: int = 200) -> float:
    """std of deterministic DDIM samples of class c with the exact guided eps at weight w, divided by that
    at w = 0, on the mixture of notebooks/09, sec. 2. The codes x_T are the n quantiles of N(0, 1), so the
    number is a deterministic computation (no Monte Carlo noise)."""
    s, oracle = linear_schedule(), SEC2_MIXTURE.class_eps_model(linear_schedule(), SEC2_CLASSES)
    z = torch.tensor(stats.norm.ppf((torch.arange(n, dtype=F64) + 0.5) / n), dtype=F64)[:, None]
    sd = [float(ddim_sample(guided(oracle, c, v), None, s, steps=steps, x_T=z).std()) for v in (0.0, w)]
    return sd[1] / sd[0]


def check_guided_diversity(prediction, c: int = 1, w: float = 4.0) -> Result:
    """Exercise 09.2: predict std(class c at w) / std(class c at w = 0) for guided DDIM on the mixture of
    sec. 2 with its exact eps (guided_std_ratio). Correct within a factor of 2 (the direction and the size)."""
    def body():
        if isinstance(prediction, bool) or not isinstance(prediction, (int, float)) or not prediction > 0:
            raise _StudentError(f"expected a positive number (a ratio of standard deviations), got {prediction!r}")
        exact = guided_std_ratio(c, w)
        ok = abs(math.log(prediction / exact)) <= math.log(2)
        head = "correct (within a factor of 2)" if ok else f"not yet: off by a factor {prediction / exact:.2f}"
        return ("correct" if ok else "not yet",
                f"{head}. You predicted {float(prediction):.3g}; the library gives {exact:.3f} (deterministic DDIM, "
                f"200 steps, exact eps). Guidance does not only remove the other class: within the class it pulls "
                f"every sample towards the side away from the other class and squeezes the spread, far more than "
                f"the tilted density p(x|c) p(c|x)^w would (sec. 2.3). Diversity falls as w grows.",
                abs(math.log(prediction / exact)))
    return _run(f"Exercise 09.2 predict the spread of class {c} at w = {w:g}", prediction, body)


def midpoint_guided_eps(t: int = 500, w: float = 2.0) -> float:
    """The guided eps of class +1 (mean +2) of TWO_CLASSES at x_t = 0, by the library: guided(oracle, 1, w)."""
    oracle = TWO_CLASSES.class_eps_model(linear_schedule(), [0, 1])
    return float(guided(oracle, 1, w)(torch.zeros(1, 1, dtype=F64), torch.full((1,), t)))


def check_midpoint_eps(my_eps_midpoint, t: int = 500, w: float = 2.0) -> Result:
    """Exercise 09.3: eps_tilde at x_t = 0, t = 500, w = 2, class +1 of N(-2, 1) / N(+2, 1) with equal weights,
    derived by hand: -(1 + w) sqrt(alpha_bar_t (1 - alpha_bar_t)) * 2. Against `guided` on the exact oracle."""
    ab = float(linear_schedule().alpha_bars[t])
    root = math.sqrt(ab * (1 - ab))

    def body():
        if isinstance(my_eps_midpoint, bool):
            raise _StudentError("expected a number, got a bool")
        got = _call(lambda: my_eps_midpoint)
        if got.numel() != 1:
            raise _StudentError(f"expected one number, got {got.numel()} values")
        exact = torch.tensor(midpoint_guided_eps(t, w), dtype=F64)
        return _compare([(f"x_t = 0, t = {t}, w = {w:g}", got.reshape(()), exact, 1 + abs(float(exact)), {
            "the conditional eps alone (w = 0): guidance adds w times the same again here":
                torch.tensor(-root * 2, dtype=F64),
            "the scale convention: w eps_c + (1 - w) eps_u uses s = 1 + w as w": torch.tensor(-w * root * 2, dtype=F64),
            "the sign: eps points from the mean towards x_t, here away from +2": torch.tensor((1 + w) * root * 2,
                                                                                               dtype=F64),
            "alpha_bar_t in place of sqrt(alpha_bar_t) for the mean's scale": torch.tensor(
                -(1 + w) * ab * math.sqrt(1 - ab) * 2, dtype=F64)})])
    return _run("Exercise 09.3 the guided eps at the midpoint, by hand", my_eps_midpoint, body)
