"""The variational bound and its terms (diffusion_lib/process/elbo.py; notebooks/03_elbo.ipynb).

What is checked, against true values only:
  - normal_kl: 0 for identical Gaussians, closed-form values, Monte Carlo E_{N1}[log N1 - log N2];
  - prior_kl (L_T): the closed form (3.1), and x_0 = 0 where it is D * KL(N(0, 1 - ab_T) || N(0, 1));
  - step_kl (L_{t-1}): 0 when the model is the posterior; the identity
    L_{t-1} = C_t + gamma_t ||eps - eps_hat||^2 (DDPM eq. 12) for both choices of sigma_t^2;
  - the discretized decoder (DDPM eq. 13): bin probabilities sum to 1 over 256 and 17 levels, one bin
    against numerical integration; decoder_nll with levels=None is the Gaussian NLL; a perfect denoiser's
    L_0 is the closed-form floor for both decoder variances (beta_1, the default, and beta_tilde_2, the
    DDPM reference code's); bits/dim;
  - elbo_terms: shape (B, T+1), column T = prior_kl, column 0 = decoder_nll and column 1 = step_kl for
    the same draws of x_t;
  - Gaussian data with the optimal model eps* = E[eps | x_t]: the Monte Carlo bound against its closed
    form, the bound below log p (one-sided), the tight case s = 1, sigma_t^2 = beta_t (gap exactly 0);
  - whole forward chains: the per-chain log-ratio of DDPM eq. (3) equals the rearranged integrand of
    eq. (5) to rounding, and its mean equals the mean of the analytic terms (eq. 5) within k s.e.;
  - simple_loss_weights; bad inputs raise with a message naming what was expected.

False-failure rate. Exact identities use tolerances 10^3 to 10^6 times float64 rounding: they do not
fail by chance. Each Monte Carlo check uses a seeded generator (so a run is deterministic) and is
designed to fail for a correct library with probability P(|Z| > 5) = 5.7e-7 (two-sided, Gaussian
estimator), or 2.9e-7 for the two one-sided checks (-ELBO >= -log p). There are 6 two-sided and 2
one-sided Monte Carlo checks: a designed false-failure rate of 4e-6 for the module. The seed sweep
(scripts/seed_sweep.py) checks it; measured: README, Tests.
"""
import math

import pytest
import torch
from scipy import integrate, stats

from diffusion_lib import (scaled_linear_schedule, bits_per_dim, cosine_schedule, decoder_nll,
                           discretized_gaussian_log_likelihood, elbo_terms, gather, gaussian,
                           GaussianMixture, linear_schedule, mean_from_eps, normal_kl,
                           posterior_mean_var, prior_kl, q_sample, q_step, reverse_variance,
                           simple_loss, simple_loss_weights, step_kl)

F64 = torch.float64
K = 5.0                      # Monte Carlo tolerance in standard errors (5.7e-7 per check)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run this module on one thread: its tensors are tiny, and on a busy machine extra intra-op
    threads make the 50- to 1000-step loops many times slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed):
    return torch.Generator().manual_seed(seed)



def log_normal(x, mean, var):
    var = torch.as_tensor(var, dtype=F64)
    return -0.5 * torch.log(2 * math.pi * var) - (x - mean) ** 2 / (2 * var)


def assert_within_se(samples, expected, k=K):
    mean, se = float(samples.mean()), float(samples.std() / math.sqrt(samples.numel()))
    assert abs(mean - expected) <= k * se, f"{mean} +- {se} is {abs(mean - expected) / se:.1f} s.e. from {expected}"


# ----------------------------------------------------------------------------- normal_kl

def test_normal_kl_is_zero_for_identical_gaussians():
    m, lv = torch.randn(2, 100, generator=gen(0), dtype=F64)
    assert normal_kl(m, lv, m, lv).abs().max() == 0.0


@pytest.mark.parametrize("m1, v1, m2, v2, expected", [
    (0.0, 1.0, 0.0, 2.0, 0.5 * math.log(2.0) - 0.25),          # 1/2 [log 2 + 1/2 - 1]
    (1.0, 1.0, 0.0, 1.0, 0.5),                                  # 1/2 (m1 - m2)^2
    (0.0, 4.0, 0.0, 1.0, 0.5 * (3.0 - math.log(4.0))),          # 1/2 [-log 4 + 4 - 1]
    (2.0, 0.5, -1.0, 2.0, 0.5 * (math.log(4.0) + 0.25 + 4.5 - 1.0)),
])
def test_normal_kl_known_values(m1, v1, m2, v2, expected):
    kl = normal_kl(torch.tensor(m1, dtype=F64), math.log(v1), torch.tensor(m2, dtype=F64), math.log(v2))
    assert abs(float(kl) - expected) <= 1e-14


@pytest.mark.parametrize("m1, v1, m2, v2", [(0.3, 0.5, -0.2, 0.8), (1.0, 0.04, 0.9, 0.01)])
def test_normal_kl_matches_monte_carlo(m1, v1, m2, v2):
    x = m1 + math.sqrt(v1) * torch.randn(200_000, generator=gen(1), dtype=F64)
    log_ratio = log_normal(x, m1, v1) - log_normal(x, m2, v2)
    kl = normal_kl(torch.tensor(m1, dtype=F64), math.log(v1), torch.tensor(m2, dtype=F64), math.log(v2))
    assert_within_se(log_ratio, float(kl))


# ----------------------------------------------------------------------------- prior_kl = L_T

@pytest.mark.parametrize("schedule", [linear_schedule(), cosine_schedule(), scaled_linear_schedule(10)],
                         ids=["linear", "cosine", "rescaled10"])
def test_prior_kl_at_zero_is_kl_of_the_narrowed_gaussian(schedule):
    ab_T = schedule.alpha_bars[-1]
    x0 = torch.zeros(3, 3, 4, 4, dtype=F64)                       # D = 48
    per_dim = 0.5 * (-ab_T - torch.log1p(-ab_T))                  # KL(N(0, 1 - ab_T) || N(0, 1))
    assert (prior_kl(x0, schedule) - 48 * per_dim).abs().max() <= 48 * 1e-15


@pytest.mark.parametrize("schedule", [linear_schedule(), cosine_schedule()], ids=["linear", "cosine"])
def test_prior_kl_closed_form(schedule):
    x0 = 2 * torch.rand(8, 1, 8, 8, generator=gen(2), dtype=F64) - 1
    ab_T = schedule.alpha_bars[-1]
    expected = (0.5 * (ab_T * (x0 ** 2 - 1) - torch.log1p(-ab_T))).sum((1, 2, 3))   # notebooks/03, eq. (3.1)
    assert (prior_kl(x0, schedule) - expected).abs().max() <= 64 * 1e-14


# ----------------------------------------------------------------------------- step_kl = L_{t-1}

def test_step_kl_is_zero_when_the_model_is_the_posterior():
    sched = linear_schedule()
    g = gen(3)
    x0 = torch.randn(32, 2, 3, generator=g, dtype=F64)
    t = torch.randint(2, sched.T + 1, (32,), generator=g)
    xt = q_sample(x0, t, sched, torch.randn(x0.shape, generator=g, dtype=F64))
    mean, var = posterior_mean_var(x0, xt, t, sched)
    assert step_kl(x0, xt, t, mean, var, sched).abs().max() <= 1e-12


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_step_kl_is_weighted_noise_error(variance):
    # L_{t-1} = C_t + gamma_t ||eps - eps_hat||^2, x_t built from (x_0, eps): DDPM eq. (12)
    sched = linear_schedule()
    g = gen(4)
    shape = (256, 3, 4, 4)
    x0 = 2 * torch.rand(shape, generator=g, dtype=F64) - 1
    eps = torch.randn(shape, generator=g, dtype=F64)
    eps_hat = eps + 0.3 * torch.randn(shape, generator=g, dtype=F64)
    t = torch.randint(2, sched.T + 1, (256,), generator=g)
    xt = q_sample(x0, t, sched, eps)
    sigma2 = reverse_variance(sched, variance)
    kl = step_kl(x0, xt, t, mean_from_eps(xt, t, eps_hat, sched), gather(sigma2, t, x0), sched)
    b, a, ab, bt = sched.betas[t], sched.alphas[t], sched.alpha_bars[t], sched.beta_tildes[t]
    lam = b ** 2 / (2 * sigma2[t] * a * (1 - ab))
    C = 48 * 0.5 * (torch.log(sigma2[t] / bt) + bt / sigma2[t] - 1)      # 0 for beta_tilde
    expected = C + lam * ((eps - eps_hat) ** 2).sum((1, 2, 3))
    assert ((kl - expected).abs() / expected).max() <= 1e-9


# ----------------------------------------------------------------------------- the decoder L_0

@pytest.mark.parametrize("levels", [256, 17])
@pytest.mark.parametrize("mean, scale", [(0.0, 0.01), (0.3, 0.1), (-0.97, 0.002), (1.3, 0.05), (0.0, 5.0)])
def test_discretized_probabilities_sum_to_one(levels, mean, scale):
    grid = torch.linspace(-1, 1, levels, dtype=F64)
    log_p = discretized_gaussian_log_likelihood(grid, torch.full_like(grid, mean), math.log(scale), levels)
    assert abs(float(log_p.exp().sum()) - 1.0) <= 1e-12


@pytest.mark.parametrize("x, mean, scale, levels", [(0.0, 0.002, 0.01, 256), (-1.0, -0.98, 0.02, 256),
                                                    (1.0, 0.9, 0.1, 17), (0.25, 0.2, 0.05, 17)])
def test_discretized_bin_matches_quadrature(x, mean, scale, levels):
    delta = 1 / (levels - 1)
    lo = -math.inf if x == -1 else x - delta
    hi = math.inf if x == 1 else x + delta
    p_quad = integrate.quad(stats.norm.pdf, lo, hi, args=(mean, scale), epsabs=0, epsrel=1e-12)[0]
    p = discretized_gaussian_log_likelihood(torch.tensor([x], dtype=F64), torch.tensor([mean], dtype=F64),
                                            math.log(scale), levels).exp()
    assert abs(float(p) / p_quad - 1) <= 1e-9


def test_decoder_nll_continuous_is_the_gaussian_nll():
    sched = linear_schedule()
    g = gen(5)
    x0 = torch.randn(16, 1, 8, 8, generator=g, dtype=F64).clamp(-1, 1)
    x1 = q_sample(x0, 1, sched, torch.randn(x0.shape, generator=g, dtype=F64))
    eps_hat = torch.randn(x0.shape, generator=g, dtype=F64)
    mean = mean_from_eps(x1, 1, eps_hat, sched)
    expected = -torch.from_numpy(stats.norm.logpdf(x0.numpy(), mean.numpy(),
                                                   math.sqrt(float(sched.betas[1])))).sum((1, 2, 3))
    got = decoder_nll(x0, x1, eps_hat, sched, levels=None)
    assert ((got - expected).abs() / expected.abs()).max() <= 1e-10


@pytest.mark.parametrize("decoder_variance", ["beta_1", "beta_tilde_2"])
def test_decoder_of_a_perfect_denoiser_is_the_closed_form_floor(decoder_variance):
    """eps_hat = eps puts the decoder mean on x_0 (DDPM eq. 11 at t = 1), so each interior 8-bit pixel has
    probability 2 Phi(delta / sigma_1) - 1 and each edge pixel Phi(delta / sigma_1) (notebooks/03, sec. 4),
    with sigma_1^2 = beta_1 (the default) or beta_tilde_2 = beta_2 (1 - alpha_bar_1) / (1 - alpha_bar_2)
    (the DDPM reference code)."""
    sched = linear_schedule()
    b, ab = sched.betas, sched.alpha_bars
    var = {"beta_1": b[1], "beta_tilde_2": b[2] * (1 - ab[1]) / (1 - ab[2])}[decoder_variance]
    g = gen(16)
    x0 = 2 * torch.randint(0, 256, (8, 3, 4, 4), generator=g).to(F64) / 255 - 1
    x0[0, 0, 0] = torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=F64)          # edge values for sure
    eps = torch.randn(x0.shape, generator=g, dtype=F64)
    x1 = q_sample(x0, 1, sched, eps)
    z = (1 / 255) / math.sqrt(float(var))
    edge = x0.abs() == 1
    per_pixel = torch.where(edge, torch.tensor(-stats.norm.logcdf(z), dtype=F64),
                            torch.tensor(-math.log1p(-2 * stats.norm.sf(z)), dtype=F64))
    got = decoder_nll(x0, x1, eps, sched, 256, decoder_variance=decoder_variance)
    assert ((got - per_pixel.sum((1, 2, 3))).abs() / got).max() <= 1e-10


def test_decoder_variance_default_is_beta_1_and_beta_tilde_2_is_sharper():
    sched = linear_schedule()
    g = gen(17)
    x0 = 2 * torch.randint(0, 17, (6, 1, 8, 8), generator=g).to(F64) / 16 - 1
    x1 = q_sample(x0, 1, sched, torch.randn(x0.shape, generator=g, dtype=F64))
    eps_hat = torch.randn(x0.shape, generator=g, dtype=F64)
    for levels in (17, None):
        assert torch.equal(decoder_nll(x0, x1, eps_hat, sched, levels),
                           decoder_nll(x0, x1, eps_hat, sched, levels, decoder_variance="beta_1"))
    mean = mean_from_eps(x1, 1, eps_hat, sched)
    sd = math.sqrt(float(sched.beta_tildes[2]))
    expected = -torch.from_numpy(stats.norm.logpdf(x0.numpy(), mean.numpy(), sd)).sum((1, 2, 3))
    got = decoder_nll(x0, x1, eps_hat, sched, None, decoder_variance="beta_tilde_2")
    assert ((got - expected).abs() / expected.abs()).max() <= 1e-10
    assert float(sched.beta_tildes[2]) < float(sched.betas[1])             # always, for beta_2 < 1


def test_elbo_terms_passes_the_decoder_variance_to_column_0_only():
    sched = scaled_linear_schedule(12)
    data = gaussian([0.1, -0.2], [0.5, 0.4])
    x0 = data.sample(5, gen(18))
    default = elbo_terms(data.eps_model(sched), x0, sched, generator=gen(19), levels=None)
    reference = elbo_terms(data.eps_model(sched), x0, sched, generator=gen(19), levels=None,
                           decoder_variance="beta_tilde_2")
    assert torch.equal(default[:, 1:], reference[:, 1:])
    x1 = q_sample(x0, 1, sched, torch.randn(x0.shape, generator=gen(19), dtype=F64))
    eps_hat = data.eps_model(sched)(x1, torch.ones(5, dtype=torch.long))
    assert torch.allclose(reference[:, 0], decoder_nll(x0, x1, eps_hat, sched, None, "beta_tilde_2"), rtol=1e-12)
    assert not torch.allclose(reference[:, 0], default[:, 0])


def test_bits_per_dim():
    nats = torch.tensor([1.0, 10.0, 123.4], dtype=F64)
    assert torch.allclose(bits_per_dim(nats, 64), nats / (64 * math.log(2)), rtol=1e-15, atol=0)
    assert abs(float(bits_per_dim(torch.tensor(3072 * math.log(256.0)), 3072)) - 8.0) <= 1e-12


# ----------------------------------------------------------------------------- elbo_terms

def test_elbo_terms_shape_and_columns():
    # elbo_terms draws one noise per t in the order t = 1, 2, ..., T from the generator
    sched = scaled_linear_schedule(12)
    data = gaussian([0.1, -0.2, 0.3], [0.5, 0.4, 0.3])
    model = data.eps_model(sched)
    x0 = data.sample(7, gen(6))
    terms = elbo_terms(model, x0, sched, generator=gen(7), levels=None)
    assert terms.shape == (7, 13) and terms.dtype == F64
    assert torch.equal(terms[:, 12], prior_kl(x0, sched))
    g = gen(7)
    x1 = q_sample(x0, 1, sched, torch.randn(x0.shape, generator=g, dtype=F64))
    t1 = torch.ones(7, dtype=torch.long)
    assert torch.allclose(terms[:, 0], decoder_nll(x0, x1, model(x1, t1), sched, levels=None), rtol=1e-12)
    x2 = q_sample(x0, 2, sched, torch.randn(x0.shape, generator=g, dtype=F64))
    mean2 = mean_from_eps(x2, 2, model(x2, 2 * t1), sched)
    assert torch.allclose(terms[:, 1], step_kl(x0, x2, 2, mean2, gather(sched.beta_tildes, 2, x0), sched),
                          rtol=1e-12)


def expected_neg_elbo(mu, s, schedule, variance):
    """E_{x_0}[-ELBO] for x_0 ~ N(mu, s^2) in 1-D and the optimal model; notebooks/03, eq. (6.3)."""
    ab, T = schedule.alpha_bars, schedule.T
    m = ab * s ** 2 + 1 - ab
    sigma2, bt = reverse_variance(schedule, variance), schedule.beta_tildes
    L_T = 0.5 * (ab[T] * (mu ** 2 + s ** 2 - 1) - torch.log1p(-ab[T]))
    lam = schedule.betas[2:] ** 2 / (2 * sigma2[2:] * schedule.alphas[2:] * (1 - ab[2:]))
    C = 0.5 * (torch.log(sigma2[2:] / bt[2:]) + bt[2:] / sigma2[2:] - 1)
    L_mid = (C + lam * ab[2:] * s ** 2 / m[2:]).sum()
    L_0 = 0.5 * math.log(2 * math.pi * float(schedule.betas[1])) + s ** 2 / (2 * m[1])
    return float(L_T + L_mid + L_0)


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
@pytest.mark.parametrize("T", [10, 100, 1000])
def test_expected_bound_closed_form_is_entropy_plus_chain_kl(T, variance):
    # the oracle above, checked exactly: E[-ELBO] - H[x_0] = KL(q(x_{0:T}) || p(x_{0:T})), which for
    # Gaussian data is the prior mismatch plus one variance KL per step (notebooks/03, eq. 6.5)
    sched, mu, s = scaled_linear_schedule(T), 0.3, 0.5
    ab, b = sched.alpha_bars, sched.betas
    m = ab * s ** 2 + 1 - ab                                  # Var(x_t)
    v = b[1:] * m[:-1] / m[1:]                                # Var(x_{t-1} | x_t)
    sigma2 = reverse_variance(sched, variance).clone()
    sigma2[1] = b[1]                                          # the decoder's variance
    gap = 0.5 * (m[T] + ab[T] * mu ** 2 - 1 - torch.log(m[T])) \
        + (0.5 * (torch.log(sigma2[1:] / v) + v / sigma2[1:] - 1)).sum()
    entropy = 0.5 * math.log(2 * math.pi * math.e * s ** 2)
    assert abs(expected_neg_elbo(mu, s, sched, variance) - entropy - float(gap)) <= 1e-10


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_gaussian_data_bound_with_the_optimal_model(variance):
    sched = scaled_linear_schedule(20)
    mu, s = 0.3, 0.5
    data = gaussian(mu, s)
    x0 = data.sample(20_000, gen(8))
    neg_elbo = elbo_terms(data.eps_model(sched), x0, sched, generator=gen(9), variance=variance,
                          levels=None).sum(1)
    assert_within_se(neg_elbo, expected_neg_elbo(mu, s, sched, variance))
    # -ELBO >= -log p(x_0) on average: one-sided, within K s.e.
    gap = neg_elbo + data.log_prob(x0)
    assert float(gap.mean()) >= -K * float(gap.std() / math.sqrt(gap.numel()))
    assert expected_neg_elbo(mu, s, sched, variance) > 0.5 * math.log(2 * math.pi * math.e * s ** 2)


def test_standard_normal_data_with_beta_variance_has_a_tight_bound():
    # x_0 ~ N(0, 1): q(x_t) = N(0, 1) for every t and the true reverse variance is beta_t, so with the
    # optimal mean and sigma_t^2 = beta_t the bound equals log p(x_0) on average (notebooks/03, sec. 6)
    sched = scaled_linear_schedule(20)
    data = gaussian(0.0, 1.0)
    x0 = data.sample(20_000, gen(10))
    gap = elbo_terms(data.eps_model(sched), x0, sched, generator=gen(11), variance="beta",
                     levels=None).sum(1) + data.log_prob(x0)
    assert_within_se(gap, 0.0)
    assert abs(expected_neg_elbo(0.0, 1.0, sched, "beta") - 0.5 * math.log(2 * math.pi * math.e)) <= 1e-12


def chain_log_ratio(x0, schedule, model, generator):
    """Per chain: log q(x_{1:T}|x_0) - log p(x_{0:T}) (DDPM eq. 3) and the integrand of eq. (5)."""
    sigma2 = schedule.beta_tildes.clone()
    sigma2[1] = schedule.betas[1]                     # the decoder's variance at t = 1
    T, B = schedule.T, x0.shape[0]
    eq3, eq5 = torch.zeros(B, dtype=F64), torch.zeros(B, dtype=F64)
    x_prev = x0
    for t in range(1, T + 1):
        xt = q_step(x_prev, t, schedule, torch.randn(x0.shape, generator=generator, dtype=F64))
        mu = mean_from_eps(xt, t, model(xt, torch.full((B,), t)), schedule)
        log_p = log_normal(x_prev, mu, sigma2[t]).sum(1)
        eq3 += log_normal(xt, schedule.alphas[t].sqrt() * x_prev, schedule.betas[t]).sum(1) - log_p
        if t == 1:
            eq5 -= log_p
        else:
            post_mean, post_var = posterior_mean_var(x0, xt, t, schedule)
            eq5 += log_normal(x_prev, post_mean, post_var).sum(1) - log_p
        x_prev = xt
    log_prior = log_normal(x_prev, 0.0, 1.0).sum(1)
    ab_T = schedule.alpha_bars[T]
    return eq3 - log_prior, eq5 + log_normal(x_prev, ab_T.sqrt() * x0, 1 - ab_T).sum(1) - log_prior


def test_full_chain_log_ratio_equals_the_analytic_terms():
    sched = scaled_linear_schedule(50)           # at T = 20 the huge late betas make the chain estimate noisy
    mixture = GaussianMixture([0.3, 0.7], [[-0.6], [0.5]], [[0.15], [0.25]])
    eps_star = mixture.eps_model(sched)
    model = lambda xt, t: 0.8 * eps_star(xt, t)       # a given, imperfect model
    x0 = mixture.sample(80_000, gen(12))
    eq3, eq5 = chain_log_ratio(x0, sched, model, gen(13))
    assert (eq3 - eq5).abs().max() <= 1e-9            # eqs. (3) and (5) agree chain by chain
    analytic = elbo_terms(model, x0, sched, generator=gen(14), levels=None).sum(1)
    assert_within_se(eq3 - analytic, 0.0)             # same x_0, independent noise: paired difference


# ----------------------------------------------------------------------------- L_simple weights

@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_simple_loss_weights(variance):
    sched = linear_schedule()
    lam = simple_loss_weights(sched, variance)
    assert lam.shape == (sched.T + 1,) and lam.dtype == F64
    assert lam[0] == 0 and lam[1] == 0
    sigma2 = sched.beta_tildes if variance == "beta_tilde" else sched.betas
    b, a, ab = sched.betas[2:], sched.alphas[2:], sched.alpha_bars[2:]
    assert torch.allclose(lam[2:], b ** 2 / (2 * sigma2[2:] * a * (1 - ab)), rtol=1e-12, atol=0)


def test_simple_loss_weights_beta_tilde_is_the_snr_drop():
    sched = cosine_schedule()
    lam = simple_loss_weights(sched, "beta_tilde")
    snr = sched.snr
    assert torch.allclose(lam[2:], 0.5 * (snr[1:-1] / snr[2:] - 1), rtol=1e-9, atol=0)


def test_simple_loss_is_the_mean_squared_error():
    eps, eps_hat = torch.randn(2, 4, 3, 5, 5, generator=gen(15))
    assert torch.equal(simple_loss(eps, eps_hat), ((eps - eps_hat) ** 2).mean())


# ----------------------------------------------------------------------------- bad inputs

def test_step_kl_rejects_t_equal_one():
    sched = linear_schedule()
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"2\.\.1000"):
        step_kl(x, x, 1, x, 0.1, sched)


def test_step_kl_rejects_a_model_mean_of_another_shape():
    sched = linear_schedule()
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="model_mean must have the shape of x0"):
        step_kl(x, x, 5, torch.zeros(4, 3, dtype=F64), 0.1, sched)


def test_decoder_nll_rejects_x1_of_another_shape():
    sched = linear_schedule()
    with pytest.raises(ValueError, match="x1 must have the shape of x0"):
        decoder_nll(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 4), sched)


def test_discretized_rejects_one_level():
    x = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        discretized_gaussian_log_likelihood(x, x, 0.0, levels=1)


@pytest.mark.parametrize("call", [
    lambda s: simple_loss_weights(s, "learned"),
    lambda s: reverse_variance(s, "beta_hat"),
    lambda s: elbo_terms(lambda x, t: x, torch.zeros(2, 1, dtype=F64), s, variance="fixed"),
], ids=["simple_loss_weights", "reverse_variance", "elbo_terms"])
def test_unknown_variance_is_rejected(call):
    with pytest.raises(ValueError, match="variance must be one of"):
        call(scaled_linear_schedule(5))


@pytest.mark.parametrize("call", [
    lambda s: decoder_nll(torch.zeros(2, 1, dtype=F64), torch.zeros(2, 1, dtype=F64), torch.zeros(2, 1, dtype=F64),
                          s, None, decoder_variance="beta_tilde_1"),
    lambda s: elbo_terms(lambda x, t: x, torch.zeros(2, 1, dtype=F64), s, decoder_variance="beta"),
], ids=["decoder_nll", "elbo_terms"])
def test_unknown_decoder_variance_is_rejected(call):
    with pytest.raises(ValueError, match="decoder_variance must be one of"):
        call(scaled_linear_schedule(5))


def test_normal_kl_needs_a_tensor():
    with pytest.raises(TypeError, match="at least one torch.Tensor"):
        normal_kl(0.0, 0.0, 1.0, 0.0)
