"""Checks for the exercises that end notebooks 05 (DDPM sampling), 06 (DDIM) and 07 (latent space).

The format of exercises.py; each notebook imports this module as `exercises` (`from diffusion_lib import
exercises_sampling as exercises`). A check prints "correct", "not yet: ..." (how far off, where, and the
typical mistake the answer matches) or "not attempted yet", and raises only for a wrong answer marked with
`exercises.solution` (docs/teaching.md, sec. 5). The library is the oracle: `ddpm_step`, `ddim_sigma`,
`ddim_step`, `slerp`, and `ddim_invert`, read off step by step. Errors are relative to the size of the terms
of the formula (at least 1), so float32 arithmetic passes.
"""
from __future__ import annotations

import math

import torch

from .grading import TOL, TS, Result, _call, _compare, _predict, _run, _test_schedules, solution  # noqa: F401
from ...samplers.ddim import ddim_invert, ddim_sample, ddim_sigma, ddim_step
from ...samplers.ddpm import ddpm_sample, ddpm_step, reverse_variance
from ...process.forward import q_sample
from ...samplers.interpolate import lerp, slerp
from ...process.posterior import mean_from_eps, predict_x0
from ...process.schedules import Schedule, linear_schedule
from ...data.toy import gaussian

F64 = torch.float64


ALPHA_MIX = "DDPM's alpha_t in place of alpha_bar_t: the DDIM paper's alpha_t is DDPM's alpha_bar_t"


def _randn(g, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64)


def _alphas_as_alpha_bars(s: Schedule) -> Schedule:
    """A schedule whose alpha_bar_t is s's alpha_t (which must decrease): the library then makes ALPHA_MIX."""
    return Schedule(torch.cat([torch.zeros(1, dtype=F64), 1 - s.alphas[1:] / s.alphas[:-1]]), name="alphas")


# ---- notebooks/05, sec. 8 -----------------------------------------------------------------------

def check_ddpm_step(my_ddpm_step) -> Result:
    """Exercise 05.1: my_ddpm_step(xt, t, eps, schedule, noise, variance) -> x_{t-1}, an int t in 1..T,
    variance "beta_tilde" or "beta". DDPM Algorithm 2 / eq. (11); notebooks/05, eqs. (1.1)-(1.3).
    Compared with `ddpm_step` for both variances at t in TS, on (4, 1, 4, 4) float64 inputs."""
    s, g = linear_schedule(), torch.Generator().manual_seed(50)
    xt, eps, noise = (_randn(g, 4, 1, 4, 4) for _ in range(3))
    a, ab, b = s.alphas, s.alpha_bars, s.betas

    def cases():
        for variance, t in ((v, t) for v in ("beta_tilde", "beta") for t in TS):
            sigma2, z = reverse_variance(s, variance), noise if t > 1 else 0 * noise   # Algorithm 2, line 3
            mean, exact = mean_from_eps(xt, t, eps, s), ddpm_step(xt, t, eps, s, noise, variance)
            yield (f"t={t}, variance={variance!r}", _call(my_ddpm_step, xt, t, eps, s, noise, variance), exact,
                   1 + xt.abs() + eps.abs() + noise.abs(), {
                "noise added at t = 1 too (Algorithm 2, line 3: z = 0 at t = 1)": mean + sigma2[t].sqrt() * noise,
                "sigma_t^2 = beta_tilde_t whatever `variance` says": ddpm_step(xt, t, eps, s, noise, "beta_tilde"),
                "sigma_t^2 = beta_t whatever `variance` says": ddpm_step(xt, t, eps, s, noise, "beta"),
                "sigma_t^2 used as sigma_t: scale the noise by the square root": mean + sigma2[t] * z,
                "alpha_bar_t in place of alpha_t in 1 / sqrt(alpha_t)":
                    (xt - b[t] / (1 - ab[t]).sqrt() * eps) / ab[t].sqrt() + sigma2[t].sqrt() * z,
                "beta_t / (1 - alpha_bar_t): the square root in the eps coefficient is missing":
                    (xt - b[t] / (1 - ab[t]) * eps) / a[t].sqrt() + sigma2[t].sqrt() * z,
                "the schedule read at t - 1: t off by one (NaN at t = 1)":
                    (xt - b[t - 1] / (1 - ab[t - 1]).sqrt() * eps) / a[t - 1].sqrt() + sigma2[t - 1].sqrt() * z})
    return _run("Exercise 05.1 ddpm_step", my_ddpm_step, lambda: _compare(list(cases())))


def check_cost_ratio(prediction, steps: int = 50) -> Result:
    """Exercise 05.2: predict (wall time of DDPM, T = 1000 steps) / (wall time of DDIM, `steps` steps), same
    model and batch: the network calls of `ddpm_sample` / `ddim_sample`, counted. Within 5 % counts."""
    s, calls = linear_schedule(), []

    def counting_model(xt, t):
        calls.append(t)
        return torch.zeros_like(xt)
    ddpm_sample(counting_model, (1, 1), s, generator=torch.Generator().manual_seed(0))
    n_ddpm = len(calls)
    ddim_sample(counting_model, (1, 1), s, steps=steps, eta=1.0, generator=torch.Generator().manual_seed(0))
    n_ddim = len(calls) - n_ddpm
    return _predict(
        f"Exercise 05.2 predict the cost of DDPM against DDIM-{steps}", prediction, n_ddpm / n_ddim, None, 0.05,
        f"network calls of ddpm_sample / ddim_sample(steps={steps}) = {n_ddpm} / {n_ddim}",
        "Every step, DDPM's or DDIM's, with fresh noise or without, is one network call on the whole batch, and "
        "the step's own arithmetic is negligible (sec. 3): DDPM costs T ceil(N/B) calls (3.1), DDIM S ceil(N/B), "
        "so the ratio is T / S whatever N and B. That is all of DDIM's gain in speed; what it costs in quality is "
        "notebook 06, sec. 5.3.")


# ---- notebooks/06, sec. 8 -----------------------------------------------------------------------

def check_ddim_sigma(my_ddim_sigma) -> Result:
    """Exercise 06.1: my_ddim_sigma(schedule, t, t_prev, eta) -> sigma_{t -> t_prev}(eta), ints 0 <= t_prev < t.
    DDIM eq. (16); notebooks/06, eq. (2.3). Against `ddim_sigma` on one-step and longer jumps (t_prev = 0 too),
    eta in {0.5, 1}, linear, cosine and a random 10-step schedule; sigma <= 1, so the error is absolute."""
    like = torch.zeros(1, 1, dtype=F64)

    def cases():
        for s in _test_schedules():
            ab, a = s.alpha_bars, s.alphas
            jumps = ((1, 0), (2, 1), (10, 9), (500, 499), (1000, 999), (1000, 980), (980, 960), (600, 400), (100, 0),
                     (1000, 0)) if s.T == 1000 else ((1, 0), (2, 1), (7, 6), (10, 9), (10, 8), (9, 3), (5, 0))
            for (t, u), eta in ((jump, eta) for jump in jumps for eta in (0.5, 1.0)):
                exact, sigma_1 = (ddim_sigma(s, t, u, e, like).reshape(()) for e in (eta, 1.0))
                yield (f"t={t}, t_prev={u}, eta={eta} ({s.name})", _call(my_ddim_sigma, s, t, u, eta), exact, 1.0, {
                    "the one-step sigma (2.4), eta sqrt(beta_tilde_t), used for a jump: alpha_bar_{t-1} in place "
                    "of alpha_bar_{t_prev}": eta * s.beta_tildes[t].sqrt(),
                    ALPHA_MIX: eta * ((1 - a[u]) / (1 - a[t])).sqrt() * (1 - a[t] / a[u]).sqrt(),
                    "sigma^2, not sigma: take the square root": exact ** 2,
                    "eta^2 in place of eta": eta * exact,
                    "eta ignored: sigma(eta = 1)": sigma_1,
                    "the first ratio upside down, (1 - alpha_bar_t) / (1 - alpha_bar_{t_prev})":
                        eta * ((1 - ab[t]) / (1 - ab[u])).sqrt() * (1 - ab[t] / ab[u]).sqrt()})
    return _run("Exercise 06.1 sigma(eta)", my_ddim_sigma, lambda: _compare(list(cases())))


def check_ddim_step(my_ddim_step) -> Result:
    """Exercise 06.2: my_ddim_step(xt, t, t_prev, eps, schedule, eta, noise) -> x_{t_prev}, ints 0 <= t_prev < t.
    DDIM eq. (12) with sigma from eq. (16); notebooks/06, eq. (2.2). Compared with `ddim_step` on
    (4, 1, 4, 4) float64 inputs, one-step and longer jumps, eta in {0, 0.5, 1}."""
    s, g = linear_schedule(), torch.Generator().manual_seed(60)
    xt, eps, noise = (_randn(g, 4, 1, 4, 4) for _ in range(3))
    alphas = _alphas_as_alpha_bars(s)

    def cases():
        for (t, u), eta in ((jump, eta) for jump in ((1000, 980), (980, 960), (500, 480), (1000, 999), (100, 99),
                                                     (2, 1), (1, 0), (20, 0), (1000, 0)) for eta in (0.0, 0.5, 1.0)):
            exact, sigma, ab_u = ddim_step(xt, t, u, eps, s, eta, noise), ddim_sigma(s, t, u, eta, xt), s.alpha_bars[u]
            terms = 1 + (ab_u / s.alpha_bars[t]).sqrt() * (xt.abs() + eps.abs()) + eps.abs() + noise.abs()
            yield (f"t={t}, t_prev={u}, eta={eta}", _call(my_ddim_step, xt, t, u, eps, s, eta, noise), exact, terms, {
                "sigma of eta = 1 whatever eta is": ddim_step(xt, t, u, eps, s, 1.0, noise),
                "sigma_t^2 left out of the direction term, sqrt(1 - alpha_bar_{t_prev}) eps":
                    ab_u.sqrt() * predict_x0(xt, t, eps, s) + (1 - ab_u).sqrt() * eps + sigma * noise,
                "the one-step update: alpha_bar_{t-1} in place of alpha_bar_{t_prev}":
                    ddim_step(xt, t, t - 1, eps, s, eta, noise),
                ALPHA_MIX: ddim_step(xt, t, u, eps, alphas, eta, noise),
                "sigma^2 in place of sigma on the fresh noise": exact + (sigma ** 2 - sigma) * noise})
    return _run("Exercise 06.2 ddim_step", my_ddim_step, lambda: _compare(list(cases())))


def check_jump_noise(prediction, t: int = 1000, t_prev: int = 980, n: int = 4000) -> Result:
    """Exercise 06.3: predict sigma of the first step of DDIM with 50 steps at eta = 1 (t = 1000 -> 980,
    DDPM's linear schedule): exact by `ddim_sigma`; measured as the spread of `ddim_step`'s output over
    n noise draws at fixed x_t and eps. Within 5 % counts."""
    s = linear_schedule()
    ab, b = s.alpha_bars, s.betas

    def measure():
        g = torch.Generator().manual_seed(61)
        xt, eps = _randn(g, 1, 1).expand(n, 1), _randn(g, 1, 1).expand(n, 1)
        sd = float(ddim_step(xt, t, t_prev, eps, s, 1.0, _randn(g, n, 1)).std())
        return sd, sd / math.sqrt(2 * (n - 1))
    return _predict(
        f"Exercise 06.3 predict sigma of the step {t} -> {t_prev} at eta = 1", prediction,
        float(ddim_sigma(s, t, t_prev, 1.0, torch.zeros(1, 1, dtype=F64))), measure, 0.05, "sigma",
        f"eta = 1 with 50 steps is not DDPM in 50 steps. A DDPM step at t = {t} adds sqrt(beta_tilde_{t}) = "
        f"{float(s.beta_tildes[t].sqrt()):.3f}; this DDIM step jumps {t - t_prev} steps, and at eta = 1 its variance "
        f"is that of DDPM's posterior over the whole jump (2.3; exercise 02.3), close to 1 - alpha_bar_{t} / "
        f"alpha_bar_{t_prev} = 1 - (the product of {t - t_prev} alphas) = {float(1 - ab[t] / ab[t_prev]):.3f}. That is "
        f"less than the sum of the {t - t_prev} betas, {float(b[t_prev + 1:t + 1].sum()):.3f}: each step also shrinks "
        f"the noise before it by sqrt(alpha) (notebook 01, sec. 1).")


# ---- notebooks/07, sec. 6 -----------------------------------------------------------------------

def check_slerp(my_slerp) -> Result:
    """Exercise 07.1: my_slerp(z0, z1, lam) -> the spherical interpolation of each sample, a float lam in [0, 1].
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
    return _run("Exercise 07.1 slerp", my_slerp, lambda: _compare(list(cases())))


def check_midpoint_norm(prediction, D: int = 1024, n: int = 1000) -> Result:
    """Exercise 07.2: predict E|lerp(z0, z1; 1/2)| for independent z0, z1 ~ N(0, I_D), D = 1024 (a 32x32
    code). Exact: sqrt(1/2) E chi_D = Gamma((D+1)/2) / Gamma(D/2) (notebooks/07, eq. 2.1); measured with
    `lerp` on n seeded pairs. Within 2 % counts."""
    exact = math.exp(math.lgamma((D + 1) / 2) - math.lgamma(D / 2))
    shell = exact * math.sqrt(2)

    def measure():
        g = torch.Generator().manual_seed(71)
        norms = lerp(_randn(g, n, D), _randn(g, n, D), 0.5).norm(dim=1)
        return float(norms.mean()), float(norms.std()) / math.sqrt(n)
    return _predict(
        f"Exercise 07.2 predict the norm of the lerp midpoint, D = {D}", prediction, exact, measure, 0.02,
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
