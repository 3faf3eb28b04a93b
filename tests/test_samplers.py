"""Samplers against exact answers: the law of the discrete sampler on Gaussian data, equivalences.

Oracle tests. For x_0 ~ N(mu, s^2) (per dimension) the optimal denoiser eps*(x_t, t) = E[eps | x_t]
is affine in x_t, so every DDPM and DDIM step is affine in x: x' = A x + B + sigma z. The law of
the sampler's output is then Gaussian with a mean and variance that this module computes by its
own float64 recursion, written from the papers (DDPM Algorithm 2 and eq. 11; DDIM eqs. 9, 12, 16),
independently of the library. The library's samplers, driven by eps*, must hit that law.
For a Gaussian mixture, eps* is not affine; there the deterministic DDIM map is monotone in 1-D,
and its exact law is the push-forward of N(0, 1), computed here by an independent numpy
implementation and compared with a one-sample Kolmogorov-Smirnov test.

False failures: every Monte Carlo comparison allows k = 4.5 standard errors of a Gaussian
estimator (two-sided rate 6.8e-6 per comparison); each KS test rejects at p < 1e-5. The module
makes 34 such comparisons: a designed false-failure rate below 2e-4 for the module, for a fresh
seed. Seeds are fixed, so a run is deterministic. The seed sweep (scripts/seed_sweep.py) checks
the rate; measured: README, Tests.
"""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import diffusion_lib as dl

K_SE = 4.5
SCHEDULE = dl.linear_schedule()
MU, SD = np.array([0.5, -0.8]), np.array([0.3, 0.6])       # 2-D Gaussian data, diagonal
DATA = dl.gaussian(MU, SD)
N = 40_000


def _coefficients(schedule):
    return (schedule.alpha_bars.numpy(), schedule.alphas.numpy(), schedule.betas.numpy(),
            schedule.beta_tildes.numpy())


def _eps_affine(t, ab):
    """eps*(x, t) = c (x - sqrt(ab_t) mu) for x_0 ~ N(mu, s^2): returns (c, offset) per dim."""
    c = np.sqrt(1 - ab[t]) / (ab[t] * SD ** 2 + 1 - ab[t])
    return c, -c * np.sqrt(ab[t]) * MU


def exact_ddpm_law(schedule, variance):
    """Mean and variance of DDPM ancestral sampling's x_0 driven by eps*, float64 recursion."""
    ab, a, b, bt = _coefficients(schedule)
    sigma2 = bt if variance == "beta_tilde" else b
    m, v = np.zeros(2), np.ones(2)
    for t in range(schedule.T, 0, -1):
        c, off = _eps_affine(t, ab)
        k = b[t] / np.sqrt(1 - ab[t])                        # DDPM eq. (11)
        A, B = (1 - k * c) / np.sqrt(a[t]), -k * off / np.sqrt(a[t])
        m, v = A * m + B, A * A * v + (sigma2[t] if t > 1 else 0.0)
    return m, v


def exact_ddim_law(schedule, steps, eta):
    """Mean and variance of DDIM sampling's x_0 driven by eps*, float64 recursion."""
    ab = schedule.alpha_bars.numpy()
    T = schedule.T
    taus = [T * k // steps for k in range(steps, 0, -1)] + [0]
    m, v = np.zeros(2), np.ones(2)
    for t, s in zip(taus[:-1], taus[1:]):
        sig = eta * np.sqrt((1 - ab[s]) / (1 - ab[t])) * np.sqrt(1 - ab[t] / ab[s])   # DDIM eq. (16)
        P = np.sqrt(ab[s] / ab[t])                                                    # DDIM eq. (12)
        Q = np.sqrt(1 - ab[s] - sig ** 2) - np.sqrt(ab[s]) * np.sqrt(1 - ab[t]) / np.sqrt(ab[t])
        c, off = _eps_affine(t, ab)
        m, v = (P + Q * c) * m + Q * off, (P + Q * c) ** 2 * v + sig ** 2
    return m, v


def _check_law(x, mean, var):
    """Sample mean and variance per dimension within K_SE standard errors of a Gaussian law."""
    x = x.double().numpy()
    n = x.shape[0]
    for d in range(x.shape[1]):
        se_mean = math.sqrt(var[d] / n)
        se_var = var[d] * math.sqrt(2 / (n - 1))
        z_mean = (x[:, d].mean() - mean[d]) / se_mean
        z_var = (x[:, d].var(ddof=1) - var[d]) / se_var
        assert abs(z_mean) < K_SE, f"dim {d}: mean {x[:, d].mean():.5f} vs exact {mean[d]:.5f} (z={z_mean:.2f})"
        assert abs(z_var) < K_SE, f"dim {d}: var {x[:, d].var():.5f} vs exact {var[d]:.5f} (z={z_var:.2f})"


def _x_T(seed, n=N, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_1000_steps_hits_the_exact_law_of_the_discrete_sampler(variance):
    g = torch.Generator().manual_seed(11)
    x = dl.ddpm_sample(DATA.eps_model(SCHEDULE), None, SCHEDULE, generator=g, x_T=_x_T(1),
                       variance=variance)
    mean, var = exact_ddpm_law(SCHEDULE, variance)
    _check_law(x, mean, var)
    # and that law is the data law up to the discretisation (T = 1000 makes it small)
    assert np.allclose(mean, MU, atol=0.01) and np.allclose(np.sqrt(var), SD, rtol=0.05)


@pytest.mark.parametrize("steps", [50, 1000])
def test_ddim_eta0_hits_the_exact_law_of_the_discrete_sampler(steps):
    x = dl.ddim_sample(DATA.eps_model(SCHEDULE), None, SCHEDULE, steps=steps, eta=0.0, x_T=_x_T(2))
    mean, var = exact_ddim_law(SCHEDULE, steps, 0.0)
    _check_law(x, mean, var)


def test_ddim_eta_half_hits_the_exact_law():
    g = torch.Generator().manual_seed(5)
    x = dl.ddim_sample(DATA.eps_model(SCHEDULE), None, SCHEDULE, steps=20, eta=0.5, generator=g, x_T=_x_T(3))
    _check_law(x, *exact_ddim_law(SCHEDULE, 20, 0.5))


def test_exact_laws_tell_samplers_apart():
    """The oracle can fail: DDIM-10's exact law differs from DDPM's by far more than the tolerance
    (over 10 x K_SE standard errors in every dimension), so the library's DDIM-10 samples must be
    rejected by the check against DDPM's law. A DDIM that ignored `steps`, or took DDPM's steps,
    would pass that check and fail this test. Not a Monte Carlo comparison: at over 45 standard
    errors, the chance that correct samples pass the DDPM check is nil."""
    m_ddpm, v_ddpm = exact_ddpm_law(SCHEDULE, "beta_tilde")
    m10, v10 = exact_ddim_law(SCHEDULE, 10, 0.0)
    se_var = v_ddpm * math.sqrt(2 / (N - 1))
    assert np.all(np.abs(v10 - v_ddpm) > 10 * K_SE * se_var)
    x10 = dl.ddim_sample(DATA.eps_model(SCHEDULE), None, SCHEDULE, steps=10, eta=0.0, x_T=_x_T(7))
    with pytest.raises(AssertionError):                          # rejected on its mean or its variance
        _check_law(x10, m_ddpm, v_ddpm)


# --- Gaussian mixture: the DDIM map is monotone in 1-D; its exact law is a push-forward --------

MIX = dl.GaussianMixture([0.3, 0.7], [[-0.6], [0.5]], [[0.15], [0.25]])


def _mixture_eps_np(x, t, ab):
    """eps*(x, t) for the 1-D mixture, numpy float64, written independently of toy.py."""
    w, m, s = MIX.weights.numpy(), MIX.means.numpy()[:, 0], MIX.stds.numpy()[:, 0]
    var_k = ab[t] * s ** 2 + 1 - ab[t]
    mean_k = np.sqrt(ab[t]) * m
    log_r = np.log(w) - 0.5 * np.log(var_k) - 0.5 * (x[:, None] - mean_k) ** 2 / var_k
    r = np.exp(log_r - log_r.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    return (r * np.sqrt(1 - ab[t]) * (x[:, None] - mean_k) / var_k).sum(1)


def _ddim_map_np(x, steps):
    ab = SCHEDULE.alpha_bars.numpy()
    T = SCHEDULE.T
    taus = [T * k // steps for k in range(steps, 0, -1)] + [0]
    for t, s in zip(taus[:-1], taus[1:]):
        eps = _mixture_eps_np(x, t, ab)
        x0_hat = (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])              # DDIM eq. (9)
        x = np.sqrt(ab[s]) * x0_hat + np.sqrt(1 - ab[s]) * eps               # DDIM eq. (12), sigma = 0
    return x


@pytest.mark.parametrize("steps", [50, 1000])
def test_ddim_on_a_mixture_matches_the_exact_push_forward(steps):
    grid = np.linspace(-7, 7, 4001)
    image = _ddim_map_np(grid.copy(), steps)
    assert np.all(np.diff(image) > 0), "the 1-D DDIM map should be increasing"
    exact_cdf = lambda y: stats.norm.cdf(np.interp(y, image, grid))        # F_0(map(z)) = Phi(z)
    x = dl.ddim_sample(MIX.eps_model(SCHEDULE), None, SCHEDULE, steps=steps, x_T=_x_T(4, 20_000, 1))
    assert stats.kstest(x[:, 0].numpy(), exact_cdf).pvalue > 1e-5
    # the test has power: the data law itself is rejected for 50 steps (DDIM shrinks the modes)
    if steps == 50:
        data_cdf = lambda y: sum(w * stats.norm.cdf(y, m, s) for w, m, s in
                                 zip([0.3, 0.7], [-0.6, 0.5], [0.15, 0.25]))
        assert stats.kstest(x[:, 0].numpy(), data_cdf).pvalue < 1e-5


def test_ddpm_on_a_mixture_recovers_the_mode_weights():
    g = torch.Generator().manual_seed(9)
    x = dl.ddpm_sample(MIX.eps_model(SCHEDULE), None, SCHEDULE, generator=g, x_T=_x_T(6, 20_000, 1))
    frac = float((x[:, 0] > 0).double().mean())
    p = 0.7 * (1 - stats.norm.cdf(0, 0.5, 0.25)) + 0.3 * (1 - stats.norm.cdf(0, -0.6, 0.15))
    se = math.sqrt(p * (1 - p) / x.shape[0])
    # discretisation error of a 1000-step sampler with the exact eps* is far below the s.e. here
    assert abs(frac - p) < K_SE * se, f"fraction above 0: {frac:.4f} vs {p:.4f}"


# --- equivalences -----------------------------------------------------------------------------

def test_ddim_eta1_over_all_steps_equals_ddpm_with_beta_tilde():
    model = DATA.eps_model(SCHEDULE)
    x_T = _x_T(7, 64)
    a = dl.ddim_sample(model, None, SCHEDULE, steps=SCHEDULE.T, eta=1.0, x_T=x_T,
                       generator=torch.Generator().manual_seed(3))
    b = dl.ddpm_sample(model, None, SCHEDULE, x_T=x_T, variance="beta_tilde",
                       generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("t", [1, 2, 10, 500, 1000])
def test_ddim_step_eta1_equals_ddpm_step(t):
    g = torch.Generator().manual_seed(t)
    x, eps, z = (torch.randn(8, 3, generator=g, dtype=torch.float64) for _ in range(3))
    a = dl.ddim_step(x, t, t - 1, eps, SCHEDULE, eta=1.0, noise=z)
    b = dl.ddpm_step(x, t, eps, SCHEDULE, z, variance="beta_tilde")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_ddim_eta0_is_deterministic_and_ignores_the_generator():
    model = DATA.eps_model(SCHEDULE)
    x_T = _x_T(8, 16)
    a = dl.ddim_sample(model, None, SCHEDULE, steps=20, x_T=x_T, generator=torch.Generator().manual_seed(1))
    b = dl.ddim_sample(model, None, SCHEDULE, steps=20, x_T=x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_same_seed_same_samples(sampler):
    model = DATA.eps_model(SCHEDULE)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        if sampler == "ddpm":
            return dl.ddpm_sample(model, (32, 2), SCHEDULE, generator=g)
        return dl.ddim_sample(model, (32, 2), SCHEDULE, steps=25, eta=0.7, generator=g)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_ddpm_step_adds_no_noise_at_t1():
    x, eps = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    for variance in ("beta", "beta_tilde"):
        a = dl.ddpm_step(x, 1, eps, SCHEDULE, torch.zeros_like(x), variance)
        b = dl.ddpm_step(x, 1, eps, SCHEDULE, 100 * torch.randn_like(x), variance)
        assert torch.equal(a, b)
        c = dl.ddpm_step(x, 2, eps, SCHEDULE, torch.ones_like(x), variance)
        d = dl.ddpm_step(x, 2, eps, SCHEDULE, torch.zeros_like(x), variance)
        sigma2 = float(dl.reverse_variance(SCHEDULE, variance)[2])
        torch.testing.assert_close(c - d, torch.full_like(x, math.sqrt(sigma2)))


def test_inversion_then_sampling_returns_the_start_with_error_falling_in_steps():
    model = MIX.eps_model(SCHEDULE)
    x0 = MIX.sample(256, torch.Generator().manual_seed(0))
    errors = []
    for steps in (10, 50, 200, 1000):
        x_T = dl.ddim_invert(model, x0, SCHEDULE, steps=steps)
        back = dl.ddim_sample(model, None, SCHEDULE, steps=steps, x_T=x_T)
        errors.append(float((back - x0).abs().max()))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 20 and errors[-1] < 0.02, errors     # first order: ~1/steps


def exact_inversion_law(schedule, steps):
    """Mean and variance of ddim_invert's x_T for x_0 ~ N(mu, s^2): eps* at the target time."""
    ab = schedule.alpha_bars.numpy()
    T = schedule.T
    taus = [0] + [T * k // steps for k in range(1, steps + 1)]
    m, v = MU.copy(), SD ** 2
    for s, t in zip(taus[:-1], taus[1:]):
        c, off = _eps_affine(t, ab)                                   # eps*(x_s, t)
        P = np.sqrt(ab[t] / ab[s])                                     # DDIM eq. (12) run from s to t
        Q = np.sqrt(1 - ab[t]) - np.sqrt(ab[t]) * np.sqrt(1 - ab[s]) / np.sqrt(ab[s])
        m, v = (P + Q * c) * m + Q * off, (P + Q * c) ** 2 * v
    return m, v


@pytest.mark.parametrize("steps", [20, 1000])
def test_inversion_of_gaussian_data_hits_its_exact_law(steps):
    x0 = DATA.sample(N, torch.Generator().manual_seed(12))
    z = dl.ddim_invert(DATA.eps_model(SCHEDULE), x0, SCHEDULE, steps=steps)
    mean, var = exact_inversion_law(SCHEDULE, steps)
    _check_law(z, mean, var)
    if steps == 1000:   # the eta = 0 flow maps N(mu, s^2) to nearly N(0, 1)
        assert np.allclose(mean, 0, atol=0.01) and np.allclose(var, 1, atol=0.02)


def test_timesteps():
    assert dl.ddim_timesteps(1000, 50)[:3] == [1000, 980, 960] and dl.ddim_timesteps(1000, 50)[-1] == 20
    assert dl.ddim_timesteps(10, 10) == list(range(10, 0, -1))
    for T, steps in [(1000, 7), (100, 33), (5, 1)]:
        tau = dl.ddim_timesteps(T, steps)
        assert len(tau) == steps and tau[0] == T and all(a > b for a, b in zip(tau, tau[1:])) and tau[-1] >= 1
        gaps = np.diff(tau) if steps > 1 else np.zeros(1)
        assert gaps.max() - gaps.min() <= 1


def test_callback_sees_every_step_in_order():
    seen = []
    dl.ddim_sample(DATA.eps_model(SCHEDULE), (4, 2), SCHEDULE, steps=5,
                   generator=torch.Generator().manual_seed(0), callback=lambda t, x: seen.append(t))
    assert seen == [800, 600, 400, 200, 0]
    seen.clear()
    small = dl.linear_schedule(10, 1e-3, 0.2)
    dl.ddpm_sample(DATA.eps_model(small), (4, 2), small, generator=torch.Generator().manual_seed(0),
                   callback=lambda t, x: seen.append(t))
    assert seen == list(range(9, -1, -1))


# --- slerp ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_slerp_keeps_unit_variance_and_lerp_does_not(lam):
    g = torch.Generator().manual_seed(int(lam * 100))
    D, B = 4096, 64
    z0, z1 = torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(B, D, generator=g, dtype=torch.float64)
    v = dl.slerp(z0, z1, lam).var(dim=1)
    # per-sample variance of D independent unit Gaussians has s.e. sqrt(2/D); averaged over B rows
    se = math.sqrt(2 / D / B)
    assert abs(float(v.mean()) - 1.0) < K_SE * se + 2e-3       # + the O(1/sqrt(D)) angle correction
    v_lerp = dl.lerp(z0, z1, lam).var(dim=1).mean()
    assert abs(float(v_lerp) - ((1 - lam) ** 2 + lam ** 2)) < K_SE * se + 2e-3


def test_slerp_endpoints_and_per_sample_lambda():
    z0, z1 = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    torch.testing.assert_close(dl.slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(dl.slerp(z0, z1, 1.0), z1)
    lam = torch.tensor([0.0, 0.5, 1.0])
    out = dl.slerp(z0, z1, lam)
    torch.testing.assert_close(out[0], z0[0])
    torch.testing.assert_close(out[2], z1[2])
    torch.testing.assert_close(dl.slerp(z0, z0, 0.3), z0)          # parallel codes: no NaN
