"""The forward process: q_step (one step, DDPM eq. 2) and q_sample (the closed form, DDPM eq. 4).

Derivations: notebooks/01_forward_process.ipynb, sec. 1 (the step, variance preservation) and
sec. 2 (q(x_t | x_0) by induction). The central check runs the chain x_0 -> x_1 -> ... -> x_t with
t calls of q_step and compares it with one-shot sampling from the closed form.

Tolerances and false failures (for a fresh seed; the seeds are fixed, so every run is the same):
- Monte Carlo means and variances must lie within k = 4 standard errors of the exact value.
  The standard error of a sample variance is sqrt((mu4 - sigma^4 (n-3)/(n-1)) / n) with the
  exact fourth central moment mu4 of the law under test (for a Gaussian, sqrt(2/(n-1)) sigma^2).
  Two-sided false-failure rate of a Gaussian estimator: 6.3e-5 per comparison.
- Kolmogorov-Smirnov tests (two-sample, or one-sample against the exact CDF) fail when
  p < 1e-4: false-failure rate 1e-4 per test.
- The module makes 67 mean/variance comparisons and 28 KS tests: a designed false-failure rate
  below 67 * 6.3e-5 + 28 * 1e-4 = 7.0e-3 for the module (a union bound; the checks at several t
  share one chain). The exact-identity tests (formulas, t = 0, shapes, dtypes) cannot fail by
  chance. Bad inputs to q_step and q_sample: rows of tests/test_bad_inputs.py.
The seed sweep (scripts/seed_sweep.py) checks these rates; measured: README, Tests.
"""
import math

import pytest
import torch
from scipy import stats

from diffusion_lib import GaussianMixture, cosine_schedule, linear_schedule, q_sample, q_step
from diffusion_lib.data import load_digits
from diffusion_lib.course.verify import within_se

K = 4.0                    # standard errors allowed
KS_ALPHA = 1e-4            # smallest KS p-value accepted
TS = (1, 10, 100, 500, 1000)
SCHEDULES = {"linear": linear_schedule(), "cosine": cosine_schedule()}
# a clearly non-Gaussian x_0: two separated, unequal components
MIXTURE = GaussianMixture(weights=[0.3, 0.7], means=[[-2.0], [1.5]], stds=[[0.3], [0.5]])
N_1D = 20_000
N_IMG = 1_000              # digit images per chain (64 pixels each)


def _var_se(mu4: float, var: float, n: int) -> float:
    """Standard error of the unbiased sample variance: Var(s^2) = mu4/n - var^2 (n-3)/(n(n-1))."""
    return math.sqrt(mu4 / n - var ** 2 * (n - 3) / (n * (n - 1)))


def _mixture_moments(mixture: GaussianMixture, t: int, schedule):
    """Exact mean, variance and 4th central moment of q(x_t) = sum_k w_k N(m_k, v_k) (1-D)."""
    q = mixture.marginal(t, schedule)                      # notebooks/01, sec. 2
    w, m, v = q.weights, q.means[:, 0], q.stds[:, 0] ** 2
    mean = float((w * m).sum())
    d = m - mean
    var = float((w * (v + d ** 2)).sum())
    mu4 = float((w * (d ** 4 + 6 * d ** 2 * v + 3 * v ** 2)).sum())
    return mean, var, mu4


def _mixture_cdf(mixture: GaussianMixture, t: int, schedule):
    q = mixture.marginal(t, schedule)
    w, m, s = q.weights.numpy(), q.means[:, 0].numpy(), q.stds[:, 0].numpy()
    return lambda x: sum(wk * stats.norm.cdf(x, mk, sk) for wk, mk, sk in zip(w, m, s))


def _check_ks(label: str, p: float) -> None:
    print(f"{'PASS' if p > KS_ALPHA else 'FAIL'}  {label}: KS p = {p:.3g} (threshold {KS_ALPHA:g})")
    assert p > KS_ALPHA, f"{label}: KS p-value {p:.3g} below {KS_ALPHA:g}"


def _run_chain(x0: torch.Tensor, schedule, ts, generator) -> dict:
    """x_t for each t in ts, reached by t successive calls of q_step from x0 (DDPM eq. 2)."""
    x, out = x0, {}
    if 0 in ts:
        out[0] = x0
    for t in range(1, max(ts) + 1):
        x = q_step(x, t, schedule, torch.randn(x.shape, generator=generator, dtype=x.dtype))
        if t in ts:
            out[t] = x
    return out


# ---------------------------------------------------------------------------------------------
# Exact identities
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_q_sample_at_t0_returns_x0(name):
    s = SCHEDULES[name]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 4, generator=g)
    noise = torch.randn(5, 3, 4, generator=g)
    assert torch.equal(q_sample(x0, 0, s, noise), x0)
    assert torch.equal(q_sample(x0, torch.zeros(5, dtype=torch.long), s, noise), x0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_formulas_line_by_line(name):
    """q_sample = sqrt(ab_t) x0 + sqrt(1-ab_t) eps and q_step = sqrt(a_t) x + sqrt(b_t) eps."""
    s = SCHEDULES[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, dtype=torch.float64, generator=g)
    eps = torch.randn(6, 2, dtype=torch.float64, generator=g)
    for t in (1, 2, 37, 999, 1000):
        ab, a, b = float(s.alpha_bars[t]), float(s.alphas[t]), float(s.betas[t])
        torch.testing.assert_close(q_sample(x, t, s, eps),
                                   math.sqrt(ab) * x + math.sqrt(1 - ab) * eps,   # DDPM eq. (4)
                                   rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(q_step(x, t, s, eps),
                                   math.sqrt(a) * x + math.sqrt(b) * eps,         # DDPM eq. (2)
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (7, 3), (7, 1, 8, 8), (7, 3, 4, 4)])
def test_dtype_and_shape_preserved(dtype, shape):
    s = linear_schedule()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g, dtype=dtype)
    eps = torch.randn(shape, generator=g, dtype=dtype)
    t = torch.tensor([1, 5, 10, 100, 500, 999, 1000])
    for out in (q_sample(x, 123, s, eps), q_sample(x, t, s, eps),
                q_step(x, 123, s, eps), q_step(x, t, s, eps)):
        assert out.shape == x.shape and out.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_sample_t_matches_separate_calls(dtype):
    s = cosine_schedule()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 1, 4, 4, generator=g, dtype=dtype)
    eps = torch.randn(5, 1, 4, 4, generator=g, dtype=dtype)
    t = torch.tensor([1, 3, 250, 999, 1000])
    batch_sample, batch_step = q_sample(x, t, s, eps), q_step(x, t, s, eps)
    for i, ti in enumerate(t.tolist()):
        torch.testing.assert_close(batch_sample[i:i + 1], q_sample(x[i:i + 1], ti, s, eps[i:i + 1]))
        torch.testing.assert_close(batch_step[i:i + 1], q_step(x[i:i + 1], ti, s, eps[i:i + 1]))
    # a batch with t = 0 in it returns x0 for that sample only
    t0 = torch.tensor([0, 1000, 0, 10, 0])
    out = q_sample(x, t0, s, eps)
    assert torch.equal(out[t0 == 0], x[t0 == 0])
    assert not torch.equal(out[t0 != 0], x[t0 != 0])


# ---------------------------------------------------------------------------------------------
# Monte Carlo: the chain of q_step against the closed form q(x_t | x_0)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chains_1d():
    """For each schedule: chain samples from mixture x_0 at TS, and independent one-shot samples."""
    out = {}
    for i, (name, s) in enumerate(sorted(SCHEDULES.items())):
        g = torch.Generator().manual_seed(100 + i)
        chain = _run_chain(MIXTURE.sample(N_1D, generator=g), s, (0,) + TS, g)   # chain[0] = x_0
        x0_b = MIXTURE.sample(N_1D, generator=g)                 # independent x_0 for q_sample
        one_shot = {t: q_sample(x0_b, t, s, torch.randn(x0_b.shape, generator=g, dtype=torch.float64))
                    for t in TS}
        out[name] = (chain, one_shot)
    return out


@pytest.mark.parametrize("t", TS)
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_chain_vs_closed_form_1d_mixture(chains_1d, name, t):
    """t steps of q_step from a two-component mixture x_0 have the law of q_sample (DDPM eq. 4).

    Mean and variance against the exact marginal sum_k w_k N(sqrt(ab) mu_k, ab s_k^2 + 1 - ab);
    given x_0, the residual x_t - sqrt(ab) x_0 has variance 1 - ab (sharp at small t: a chain one
    step off fails here); the chain against the one-shot samples with a two-sample KS test, and
    against the exact CDF.
    """
    s = SCHEDULES[name]
    chain, one_shot = chains_1d[name]
    x = chain[t][:, 0]
    mean, var, mu4 = _mixture_moments(MIXTURE, t, s)
    n = x.numel()
    within_se(f"{name} t={t} chain mean", x.mean(), mean, math.sqrt(var / n), k=K)
    within_se(f"{name} t={t} chain var", x.var(), var, _var_se(mu4, var, n), k=K)
    ab = float(s.alpha_bars[t])
    resid = x - math.sqrt(ab) * chain[0][:, 0]
    within_se(f"{name} t={t} residual var given x0", resid.var(), 1 - ab,
              math.sqrt(2 / (n - 1)) * (1 - ab), k=K)
    _check_ks(f"{name} t={t} chain vs q_sample", stats.ks_2samp(x.numpy(), one_shot[t][:, 0].numpy()).pvalue)
    _check_ks(f"{name} t={t} chain vs exact CDF", stats.kstest(x.numpy(), _mixture_cdf(MIXTURE, t, s)).pvalue)


@pytest.mark.parametrize("t", (1, 100, 1000))
def test_chain_vs_closed_form_fixed_x0(t):
    """From a fixed x_0 the chain is Gaussian N(sqrt(ab_t) x_0, 1 - ab_t): mean, variance, KS."""
    s = linear_schedule()
    g = torch.Generator().manual_seed(200 + t)
    x0_value = 1.7
    x = _run_chain(torch.full((N_1D,), x0_value, dtype=torch.float64), s, (t,), g)[t]
    ab = float(s.alpha_bars[t])
    mean, var, n = math.sqrt(ab) * x0_value, 1 - ab, x.numel()
    within_se(f"fixed x0 t={t} chain mean", x.mean(), mean, math.sqrt(var / n), k=K)
    within_se(f"fixed x0 t={t} chain var", x.var(), var, math.sqrt(2 / (n - 1)) * var, k=K)
    _check_ks(f"fixed x0 t={t} chain vs N(mean, var)",
              stats.kstest(x.numpy(), "norm", args=(mean, math.sqrt(var))).pvalue)


@pytest.fixture(scope="module")
def chains_pixels():
    """Digit images x_0 (drawn with replacement), their chain at TS, and one-shot samples."""
    images = load_digits("train").images.to(torch.float64)      # (1498, 1, 8, 8) in [-1, 1]
    s = SCHEDULES["linear"]
    g = torch.Generator().manual_seed(300)
    x0_a = images[torch.randint(len(images), (N_IMG,), generator=g)]
    x0_b = images[torch.randint(len(images), (N_IMG,), generator=g)]
    chain = _run_chain(x0_a, s, TS, g)
    one_shot = {t: q_sample(x0_b, t, s, torch.randn(x0_b.shape, generator=g, dtype=torch.float64))
                for t in TS}
    return x0_a, chain, one_shot


@pytest.mark.parametrize("t", TS)
def test_chain_vs_closed_form_pixels(chains_pixels, t):
    """On digit images: given x_0, x_t - sqrt(ab_t) x_0 is N(0, 1 - ab_t) in every pixel.

    The 64 000 residuals of the chain are independent given x_0: their mean and variance are
    checked with Gaussian standard errors. Pixels of one image are not independent across
    images (digits are correlated), so the KS test compares one number per image, the pixel
    average, of the chain and of q_sample on independently drawn images.
    """
    s = SCHEDULES["linear"]
    x0_a, chain, one_shot = chains_pixels
    ab = float(s.alpha_bars[t])
    resid = (chain[t] - math.sqrt(ab) * x0_a).reshape(-1)
    n, var = resid.numel(), 1 - ab
    within_se(f"pixels t={t} residual mean", resid.mean(), 0.0, math.sqrt(var / n), k=K)
    within_se(f"pixels t={t} residual var", resid.var(), var, math.sqrt(2 / (n - 1)) * var, k=K)
    _check_ks(f"pixels t={t} image mean, chain vs q_sample",
              stats.ks_2samp(chain[t].mean((1, 2, 3)).numpy(), one_shot[t].mean((1, 2, 3)).numpy()).pvalue)


@pytest.mark.parametrize("t", (1, 100, 1000))
def test_q_sample_moments_given_fixed_x0(t):
    """q_sample from a fixed x_0 (a digit image): per-pixel mean sqrt(ab_t) x_0, variance 1 - ab_t."""
    s = cosine_schedule()
    x0 = load_digits("train").images[7:8].to(torch.float64)          # (1, 1, 8, 8)
    g = torch.Generator().manual_seed(400 + t)
    n = 4_000
    x0n = x0.expand(n, -1, -1, -1)
    xt = q_sample(x0n, t, s, torch.randn(x0n.shape, generator=g, dtype=torch.float64))
    ab = float(s.alpha_bars[t])
    var = 1 - ab
    # two pixels' means (one inside the digit, one in the always-black corner), and the 64
    # per-pixel sample variances averaged: independent, each with s.e. sqrt(2/(n-1)) var
    for (r, c) in ((3, 3), (0, 0)):
        within_se(f"q_sample t={t} pixel ({r},{c}) mean", xt[:, 0, r, c].mean(),
                  math.sqrt(ab) * float(x0[0, 0, r, c]), math.sqrt(var / n), k=K)
    pooled_var = xt.var(dim=0).mean()                     # mean over 64 pixels of per-pixel s^2
    within_se(f"q_sample t={t} variance", pooled_var, var, math.sqrt(2 / (n - 1) / 64) * var, k=K)


@pytest.mark.parametrize("t", (1, 500, 1000))
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_q_step_preserves_unit_variance(name, t):
    """Var(x_t) = alpha_t Var(x_{t-1}) + beta_t = 1 for unit-variance x_{t-1} (notebooks/01, sec. 1).

    x_{t-1} = +-1 with equal probability (mean 0, variance 1, far from Gaussian); then
    E[x_t^4] = alpha_t^2 + 6 alpha_t beta_t + 3 beta_t^2 exactly.
    """
    s = SCHEDULES[name]
    g = torch.Generator().manual_seed(500 + t)
    n = 50_000
    x_prev = torch.randint(0, 2, (n,), generator=g).to(torch.float64) * 2 - 1
    x = q_step(x_prev, t, s, torch.randn(n, generator=g, dtype=torch.float64))
    a, b = float(s.alphas[t]), float(s.betas[t])
    mu4 = a * a + 6 * a * b + 3 * b * b
    within_se(f"{name} t={t} q_step mean", x.mean(), 0.0, math.sqrt(1 / n), k=K)
    within_se(f"{name} t={t} q_step variance", x.var(), 1.0, _var_se(mu4, 1.0, n), k=K)


# ---------------------------------------------------------------------------------------------
# dtypes (the bad inputs of q_sample and q_step are rows of tests/test_bad_inputs.py)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [q_sample, q_step], ids=["q_sample", "q_step"])
def test_noise_of_another_dtype_is_refused_or_cast(fn):
    """docs/design.md: 'the result has x0's dtype'. float64 noise with float32 x0 must not give float64."""
    x = torch.zeros(4, 3, dtype=torch.float32)
    try:
        out = fn(x, 5, linear_schedule(), torch.zeros(4, 3, dtype=torch.float64))
    except (TypeError, ValueError) as err:
        assert "dtype" in str(err)
        return
    assert out.dtype == torch.float32
