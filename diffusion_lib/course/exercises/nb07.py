"""Checks for the exercises of notebook 07 (latent space). The library is the oracle; errors are relative to the size of the terms of the formula (at least 1), so float32 arithmetic passes."""
from __future__ import annotations

import math

import torch

from ...data.toy import gaussian
from ...process.forward import q_sample
from ...process.posterior import predict_x0
from ...process.schedules import Schedule, linear_schedule
from ...samplers.ddim import ddim_invert
from ...samplers.interpolate import lerp, slerp
from .grading import ALPHA_MIX, Result, _alphas_as_alpha_bars, _call, _compare, _predict, _randn, _run


def check_slerp(my_slerp) -> Result:
    """Exercise 07.2: my_slerp(z0, z1, lam) -> the spherical interpolation of each sample, a float lam (kappa) in [0, 1].
    DDIM sec. 5.3; notebooks/07, eq. (2.2). Compared with `slerp` on six pairs of (1, 8, 8) Gaussian codes
    (two with unequal norms), lam in {0, 0.25, 0.5, 0.8, 1}."""
    g = torch.Generator().manual_seed(70)
    z0, z1 = _randn(g, 6, 1, 8, 8), _randn(g, 6, 1, 8, 8)
    z0[1], z1[2] = 2 * z0[1], 0.5 * z1[2]
    unit0, unit1 = (z / z.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) for z in (z0, z1))
    theta = torch.arccos((z0 * z1).flatten(1).sum(1)).reshape(-1, 1, 1, 1)     # cos theta without the norms

    def cases():
        for lam in (0.0, 0.25, 0.5, 0.8, 1.0):
            exact = slerp(z0, z1, lam)
            yield (f"lam={lam}", _call(my_slerp, z0, z1, lam), exact, 1 + z0.abs() + z1.abs(), {
                "lerp, (1 - lam) z0 + lam z1: the straight line, not the great circle": lerp(z0, z1, lam),
                "the weights of z0 and z1 swapped (lam = 0 must give z0)": slerp(z1, z0, lam),
                "one angle for the whole batch: theta is per sample (flatten(1), not flatten())":
                    slerp(z0.reshape(1, -1), z1.reshape(1, -1), lam).reshape(z0.shape),
                "the unit vectors interpolated: the norms of z0 and z1 are lost": slerp(unit0, unit1, lam),
                "theta from <z0, z1> not divided by |z0| |z1| (NaN: arccos of a number outside [-1, 1])":
                    (torch.sin((1 - lam) * theta) * z0 + torch.sin(lam * theta) * z1) / torch.sin(theta)})
    return _run("Exercise 07.2 slerp", my_slerp, lambda: _compare(list(cases())))


def check_midpoint_norm(prediction, D: int = 1024, n: int = 1000) -> Result:
    """Exercise 07.1: predict E|lerp(z0, z1; 1/2)| for independent z0, z1 ~ N(0, I_D), D = 1024 (a 32x32
    code). Exact: sqrt(1/2) E chi_D = Gamma((D+1)/2) / Gamma(D/2) (notebooks/07, eq. 2.1); measured with
    `lerp` on n seeded pairs. Within 2 % counts."""
    exact = math.exp(math.lgamma((D + 1) / 2) - math.lgamma(D / 2))
    shell = exact * math.sqrt(2)

    def measure():
        g = torch.Generator().manual_seed(71)
        norms = lerp(_randn(g, n, D), _randn(g, n, D), 0.5).norm(dim=1)
        return float(norms.mean()), float(norms.std()) / math.sqrt(n)
    return _predict(
        f"Exercise 07.1 predict the norm of the lerp midpoint, D = {D}", prediction, exact, measure, 0.02,
        "|lerp(z0, z1, 1/2)|", f"|z|^2 ~ chi^2_D, so a code's norm is close to sqrt(D) = {math.sqrt(D):.0f} (E chi_D = "
        f"{shell:.3f}, spread about 1/sqrt(2) = 0.71). The midpoint (z0 + z1)/2 has variance 1/2 per coordinate "
        f"(2.1): its norm is 1/sqrt(2) of that, about sqrt(D/2) = {math.sqrt(D / 2):.2f}, "
        f"{(shell - exact) / math.sqrt(0.5):.0f} spreads inside the shell where every code the model saw lies (3 in "
        f"D = 64). slerp keeps the norm: the larger the image, the more that matters.")


def check_invert_step(my_invert_step) -> Result:
    """Exercise 07.3: my_invert_step(model, x_s, s, t, schedule) -> x_t, one step of DDIM inversion from s up
    to t > s (ints; s may be 0). notebooks/07, eq. (3.1). The exact x_t is read off `ddim_invert` itself
    (consecutive model calls) for all 10 steps of a 10-step run and three steps of a 50-step run; the
    model is the exact eps* of a 16-dimensional Gaussian (toy.gaussian), which refuses t = 0."""
    sch, g = linear_schedule(), torch.Generator().manual_seed(72)
    toy = gaussian(torch.linspace(-0.5, 0.5, 16), torch.linspace(0.1, 0.6, 16))
    x0, eps_star = toy.sample(4, generator=g).reshape(4, 1, 4, 4), toy.eps_model(sch)
    alphas = _alphas_as_alpha_bars(sch)

    def model(x, t):
        if bool((torch.as_tensor(t) == 0).any()):
            raise ValueError("the network was called at t = 0, a time it never trained on: the inversion step "
                             "evaluates it at the target time t, eps_theta(x_s, t) (notebook 07, sec. 3.1)")
        return eps_star(x, t)

    def cases():
        run_50 = _inversion_steps(model, x0, sch, 50)
        for s, t, x_s, x_t in _inversion_steps(model, x0, sch, 10) + run_50[:2] + run_50[-1:]:
            e, ab_s, ab_t = model(x_s, t), sch.alpha_bars[s], sch.alpha_bars[t]
            e_s = model(x_s, s) if s > 0 else e                  # at s = 0 the model refuses, with its message
            terms = 1 + (ab_t / ab_s).sqrt() * (x_s.abs() + e.abs()) + e.abs()
            yield (f"s={s}, t={t}", _call(my_invert_step, model, x_s, s, t, sch), x_t, terms, {
                "eps_theta(x_s, s): the network at the current time s, not at the target time t":
                    q_sample(predict_x0(x_s, s, e_s, sch), t, sch, e_s),
                "x0_hat computed at t (alpha_bar_t in place of alpha_bar_s): the step returns x_s": x_s,
                "x_s taken for x_0: sqrt(alpha_bar_t) x_s + sqrt(1 - alpha_bar_t) eps": q_sample(x_s, t, sch, e),
                ALPHA_MIX: q_sample(predict_x0(x_s, s, e, alphas), t, alphas, e),
                "the formula without its square roots": ab_t * (x_s - (1 - ab_s) * e) / ab_s + (1 - ab_t) * e})
    return _run("Exercise 07.3 one step of ddim_invert", my_invert_step, lambda: _compare(list(cases())))


def _inversion_steps(model, x0: torch.Tensor, schedule: Schedule, steps: int) -> list:
    """(s, t, x_s, x_t) for each step of ddim_invert: call k gets x_s and t, the next call (or the result) x_t."""
    seen = []

    def recording(x, t):
        seen.append((x.clone(), int(t[0])))
        return model(x, t)
    x_T = ddim_invert(recording, x0, schedule, steps)
    times, states = [0] + [t for _, t in seen], [x for x, _ in seen] + [x_T]
    return [(times[k], times[k + 1], states[k], states[k + 1]) for k in range(len(seen))]
