"""The variational bound and its terms: L = L_T + sum_{t=2}^{T} L_{t-1} + L_0 (DDPM eq. 5).

All terms are in nats and summed over the non-batch dimensions, one value per sample.
Derived in notebooks/03_elbo.ipynb: the bound in sec. 1, its split in sec. 2, L_T in sec. 3,
the decoder L_0 in sec. 4, L_simple and its weights in sec. 5.
"""
from __future__ import annotations

import math

import torch

from ..utils.validate import as_time, check_same_shape, check_tensor
from .forward import q_sample
from .posterior import mean_from_eps, posterior_mean_var
from .schedules import Schedule, gather, reverse_variance


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """Elementwise KL( N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)) ) in nats.

    KL = 1/2 [ logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2) - 1 ]
    The Gaussian KL used by DDPM eq. (5) ("Rao-Blackwellized", closed form); notebooks/03, sec. 2.
    Arguments are tensors (or floats for the log-variances) that broadcast together.
    """
    if not any(isinstance(a, torch.Tensor) for a in (mean1, logvar1, mean2, logvar2)):
        raise TypeError("normal_kl needs at least one torch.Tensor argument")
    logvar1, logvar2 = (torch.as_tensor(v, dtype=torch.float64) if not isinstance(v, torch.Tensor)
                        else v for v in (logvar1, logvar2))
    d = logvar1 - logvar2                     # exp(d) - 1 - d, written with expm1 to stay exact
    return 0.5 * (torch.expm1(d) - d + (mean1 - mean2) ** 2 * torch.exp(-logvar2))  # when d ~ 0


def _sum_per_sample(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1)


def prior_kl(x0: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """L_T = KL( q(x_T | x_0) || N(0, I) ) per sample, in nats; shape (B,).

    q(x_T | x_0) = N(sqrt(alpha_bar_T) x_0, (1 - alpha_bar_T) I)   (DDPM eq. 4)
    DDPM (Ho et al. 2020) eq. (5), the L_T term; notebooks/03, sec. 3.  x0: (B, ...).
    """
    check_tensor(x0, "x0")
    T = schedule.T
    mean = gather(schedule.alpha_bars.sqrt(), T, x0) * x0
    logvar = gather((1 - schedule.alpha_bars).log(), T, x0)
    return _sum_per_sample(normal_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0)))


def step_kl(x0: torch.Tensor, xt: torch.Tensor, t, model_mean: torch.Tensor, model_var,
            schedule: Schedule) -> torch.Tensor:
    """L_{t-1} = KL( q(x_{t-1} | x_t, x_0) || N(model_mean, model_var) ) per sample, nats; (B,).

    DDPM (Ho et al. 2020) eq. (5), the L_{t-1} terms, t in 2..T; notebooks/03, sec. 2.
    x0, xt, model_mean: (B, ...) of one shape;  t: int or LongTensor (B,) in 2..T;
    model_var: tensor or float broadcasting against x0 (for example gathered sigma_t^2).
    """
    check_tensor(x0, "x0")
    check_same_shape(x0, model_mean, "x0", "model_mean")
    as_time(t, x0.shape[0], 2, schedule.T, "cpu" if isinstance(t, int) else t.device)
    mean, var = posterior_mean_var(x0, xt, t, schedule)
    model_logvar = torch.log(torch.as_tensor(model_var, dtype=x0.dtype, device=x0.device))
    return _sum_per_sample(normal_kl(mean, var.log(), model_mean, model_logvar))


def _log_normal_cdf_interval(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log( Phi(hi) - Phi(lo) ) for lo < hi, stable in both tails (reflects when lo > 0)."""
    flip = lo > 0
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    return log_b + torch.log1p(-torch.exp(log_a - log_b).clamp(max=1 - 1e-12))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale,
                                        levels: int = 256) -> torch.Tensor:
    """Elementwise log-probability of the bin of x under N(mean, exp(log_scale)^2), in nats.

    x lies on the grid of `levels` values evenly spaced in [-1, 1] (256 for 8-bit images);
    each bin is [x - delta, x + delta], delta = 1 / (levels - 1), and the edge bins reach to
    -inf and +inf, so the probabilities over the grid sum to 1.
    DDPM (Ho et al. 2020) eq. (13); notebooks/03, sec. 4.
    """
    check_same_shape(x, mean, "x", "mean")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2 (256 for 8-bit images), got {levels!r}")
    delta = 1.0 / (levels - 1)
    inv_scale = torch.exp(-torch.as_tensor(log_scale, dtype=x.dtype, device=x.device))
    lo = torch.where(x < -1 + delta / 2, torch.full_like(x, -math.inf), (x - delta - mean) * inv_scale)
    hi = torch.where(x > 1 - delta / 2, torch.full_like(x, math.inf), (x + delta - mean) * inv_scale)
    return _log_normal_cdf_interval(lo, hi)


DECODER_VARIANCES = ("beta_1", "beta_tilde_2")


def _decoder_log_scale(schedule: Schedule, decoder_variance: str) -> float:
    """log sigma_1 for the decoder: 1/2 log beta_1 or 1/2 log beta_tilde_2 (see decoder_nll)."""
    if decoder_variance not in DECODER_VARIANCES:
        raise ValueError(f"decoder_variance must be one of {DECODER_VARIANCES}, got {decoder_variance!r}")
    if decoder_variance == "beta_1":
        return 0.5 * math.log(float(schedule.betas[1]))          # sigma_1^2 = beta_1
    if schedule.T < 2:
        raise ValueError(f"decoder_variance='beta_tilde_2' needs T >= 2, got a schedule with T = {schedule.T}")
    return 0.5 * math.log(float(schedule.beta_tildes[2]))        # sigma_1^2 = beta_tilde_2 (reference code)


def decoder_nll(x0: torch.Tensor, x1: torch.Tensor, eps_hat: torch.Tensor, schedule: Schedule,
                levels: int | None = 256, decoder_variance: str = "beta_1") -> torch.Tensor:
    """L_0 = -log p_theta(x_0 | x_1) per sample, in nats; shape (B,).

    p_theta(x_0 | x_1) = N(mu_theta(x_1, 1), sigma_1^2) integrated over the bin of x_0
    (DDPM eq. 13), or its density when levels is None (continuous toy data).
    mu_theta from eps_hat by DDPM eq. (11).

    sigma_1^2 is a convention, not forced: the posterior variance beta_tilde_1 is 0 (q(x_0 | x_1, x_0)
    is a point mass), so the choice sigma_t^2 = beta_tilde_t gives no decoder. decoder_variance picks:
      "beta_1" (default): sigma_1^2 = beta_1, the value of the choice sigma_t^2 = beta_t at t = 1;
      "beta_tilde_2": sigma_1^2 = beta_tilde_2, what the DDPM and improved-diffusion reference code
          use at t = 1 for both fixed variances (posterior_log_variance_clipped: the posterior
          log-variance with its t = 1 entry replaced by the t = 2 one; diffusion_tf/diffusion_utils_2.py,
          improved_diffusion/gaussian_diffusion.py). Smaller than beta_1, so a sharper decoder:
          use it to compare bits/dim with published figures.
    notebooks/03, sec. 4 computes the L_0 of a perfect denoiser under both.
    x0, x1, eps_hat: (B, ...) of one shape; x0 on the grid of `levels` values in [-1, 1].
    """
    check_tensor(x0, "x0")
    check_same_shape(x0, x1, "x0", "x1")
    log_scale = _decoder_log_scale(schedule, decoder_variance)  # log sigma_1
    mean = mean_from_eps(x1, 1, eps_hat, schedule)             # DDPM eq. (11) at t = 1
    if levels is None:
        log_p = -0.5 * math.log(2 * math.pi) - log_scale - 0.5 * ((x0 - mean) / math.exp(log_scale)) ** 2
    else:
        log_p = discretized_gaussian_log_likelihood(x0, mean, log_scale, levels)
    return -_sum_per_sample(log_p)


def bits_per_dim(nats: torch.Tensor, dims: int) -> torch.Tensor:
    """Convert a negative log-likelihood in nats per sample to bits per dimension: nats / (D ln 2)."""
    return nats / (dims * math.log(2.0))


def simple_loss(eps: torch.Tensor, eps_hat: torch.Tensor) -> torch.Tensor:
    """L_simple = E || eps - eps_theta(x_t, t) ||^2, as a mean over all elements (scalar).

    DDPM (Ho et al. 2020) eq. (14); notebooks/03, sec. 5.
    """
    check_tensor(eps, "eps")
    check_same_shape(eps, eps_hat, "eps", "eps_hat")
    return torch.mean((eps - eps_hat) ** 2)


def simple_loss_weights(schedule: Schedule, variance: str = "beta_tilde") -> torch.Tensor:
    """gamma_t with L_{t-1} = C_t + gamma_t E || eps - eps_hat ||^2 (sum over dims); float64 (T+1,).

    gamma_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)),   t = 2..T
    DDPM (Ho et al. 2020) eq. (12); L_simple sets gamma_t = 1 (eq. 14); notebooks/03, sec. 5.
    (Called gamma_t, not lambda_t: lambda_t is the half log-SNR, Schedule.lambdas.)
    Entries 0 and 1 are 0: L_0 is the decoder term, not a KL.
    """
    sigma2 = reverse_variance(schedule, variance)
    gamma = torch.zeros_like(schedule.betas)
    b, a, ab = schedule.betas[2:], schedule.alphas[2:], schedule.alpha_bars[2:]
    gamma[2:] = b ** 2 / (2 * sigma2[2:] * a * (1 - ab))          # DDPM eq. (12); notebooks/03, sec. 5
    return gamma


@torch.no_grad()
def elbo_terms(eps_model, x0: torch.Tensor, schedule: Schedule, generator: torch.Generator | None = None,
               variance: str = "beta_tilde", levels: int | None = 256,
               decoder_variance: str = "beta_1") -> torch.Tensor:
    """All terms of the bound for each sample, in nats: a tensor L of shape (B, T+1).

    L[:, 0] = L_0 (decoder, DDPM eq. 13);  L[:, k] = L_k = KL(q(x_k|x_{k+1},x_0) || p(x_k|x_{k+1}))
    for k = 1..T-1, with x_{k+1} ~ q(x_{k+1} | x_0);  L[:, T] = L_T (prior).  The row sum is an
    unbiased estimate of the negative ELBO, an upper bound on -log p(x_0) (DDPM eq. 5).
    eps_model(x_t, t) -> eps_hat with t a LongTensor (B,); x0: (B, ...) in [-1, 1].
    variance: sigma_t^2 for t >= 2; decoder_variance: sigma_1^2 of the decoder (see decoder_nll).
    Costs T model calls per batch. notebooks/03, sec. 2; notebooks/05, sec. 6 (bits/dim).
    """
    check_tensor(x0, "x0")
    sigma2 = reverse_variance(schedule, variance)
    _decoder_log_scale(schedule, decoder_variance)                  # refuse a bad choice before T model calls
    B, T = x0.shape[0], schedule.T
    terms = torch.zeros(B, T + 1, dtype=x0.dtype, device=x0.device)
    for t in range(1, T + 1):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        xt = q_sample(x0, t, schedule, noise)
        t_batch = torch.full((B,), t, dtype=torch.long, device=x0.device)
        eps_hat = eps_model(xt, t_batch)
        if t == 1:
            terms[:, 0] = decoder_nll(x0, xt, eps_hat, schedule, levels, decoder_variance)
        else:
            model_mean = mean_from_eps(xt, t, eps_hat, schedule)   # DDPM eq. (11)
            terms[:, t - 1] = step_kl(x0, xt, t, model_mean, gather(sigma2, t, x0), schedule)
    terms[:, T] = prior_kl(x0, schedule)
    return terms
