"""Dynamic thresholding: keep a sampler's predicted x_0 inside the data range, for large guidance weights.

Saharia et al. 2022 ("Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding",
Imagen), sec. 2.3: with a large guidance weight the guided eps_tilde predicts an x0_hat far outside
the data range [-1, 1]; the sampler then walks towards it, and the samples saturate. At every step,

    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_tilde) / sqrt(alpha_bar_t)      DDIM eq. (9)
    Omega  = max(1, the p_thr-th percentile of |x0_hat| over one sample's pixels)
    x0_thr = clamp(x0_hat, -Omega, Omega) / Omega                              (Imagen, sec. 2.3)
    eps'   = (x_t - sqrt(alpha_bar_t) x0_thr) / sqrt(1 - alpha_bar_t)          DDPM eq. (4)

so that the sampler's step, which rebuilds x0_hat from eps' by eq. (9), moves towards x0_thr: x0_hat
inside [-1, 1] is left as it is (Omega = 1), one that overshoots is clipped at its p_thr-th percentile
and scaled back into [-1, 1]. Static thresholding is Omega = 1 always (a plain clamp). notebooks/09,
eq. (5.2); the symbols are notebook 00's (Imagen writes s for Omega and p for p_thr).
As a wrapper of the (x_t, t) -> eps callable, it works with every eps-sampler unchanged.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from ..process.posterior import predict_eps, predict_x0
from ..process.schedules import Schedule

PERCENTILE = 99.5        # p_thr of Imagen's dynamic thresholding, diffusers' default (dynamic_thresholding_ratio 0.995)


def threshold_x0(x0_hat: torch.Tensor, percentile: float = PERCENTILE) -> torch.Tensor:
    """x0_hat clamped to [-Omega, Omega] and divided by Omega, Omega = max(1, percentile of |x0_hat|) per sample.

    Imagen (Saharia et al. 2022), sec. 2.3; notebooks/09, eq. (5.2). x0_hat: (B, ...); percentile in
    (0, 100] (100: Omega is the largest |pixel|, the sample is only scaled). Returns a tensor like x0_hat
    with every value in [-1, 1]."""
    a = x0_hat.detach().abs().flatten(1)
    a = a if a.dtype in (torch.float32, torch.float64) else a.float()            # quantile needs one of these
    omega = torch.quantile(a, percentile / 100, dim=1).clamp(min=1)
    omega = omega.to(x0_hat.dtype).reshape(-1, *([1] * (x0_hat.ndim - 1)))
    return torch.maximum(torch.minimum(x0_hat, omega), -omega) / omega


class Thresholded(nn.Module):
    """(x_t, t) -> eps' whose x0_hat is the dynamically thresholded x0_hat of `eps_model`: thresholded()."""

    def __init__(self, eps_model, schedule: Schedule, percentile: float = PERCENTILE):
        super().__init__()
        if not callable(eps_model):
            raise TypeError(f"eps_model must be a callable (x_t, t) -> eps_hat, got {type(eps_model).__name__}")
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule (linear_schedule(), cosine_schedule(), ...), "
                            f"got {type(schedule).__name__}")
        if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0 < percentile <= 100:
            raise ValueError(f"percentile must be a number in (0, 100] (Imagen's dynamic thresholding uses "
                             f"{PERCENTILE:g}), got {percentile!r}")
        self.eps_model, self.schedule, self.percentile = eps_model, schedule, float(percentile)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        eps = self.eps_model(x, t)
        x0_thr = threshold_x0(predict_x0(x, t, eps, self.schedule), self.percentile)   # Imagen, sec. 2.3
        return predict_eps(x, t, x0_thr, self.schedule)                               # DDPM eq. (4)

    def extra_repr(self) -> str:
        return f"percentile={self.percentile:g}"


def thresholded(eps_model, schedule: Schedule, percentile: float = PERCENTILE) -> Thresholded:
    """Dynamic thresholding (Imagen, Saharia et al. 2022, sec. 2.3) around any (x_t, t) -> eps callable.

    Returns an nn.Module (x_t, t) -> eps' with predict_x0(x_t, t, eps') = threshold_x0(x0_hat): every
    sampler then steps towards a predicted x_0 inside [-1, 1]. Typically around guided(model, y, w):
    ddim_sample(thresholded(guided(model, y, 2.0), schedule), shape, schedule). t must lie in 1..T
    (every sampler's range). notebooks/09, sec. 5.3.
    """
    return Thresholded(eps_model, schedule, percentile)
