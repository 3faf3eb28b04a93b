"""Likelihood: the negative ELBO of a model in bits per dimension (DDPM eq. 5). notebooks/05, sec. 6."""
from __future__ import annotations

import math

import torch

from ..process.elbo import bits_per_dim, elbo_terms
from ..utils.validate import check_tensor


@torch.no_grad()
def bits_per_dim_of(eps_model, images: torch.Tensor, schedule, levels, generator=None,
                    batch_size: int = 256, variance: str = "beta_tilde") -> tuple[float, float]:
    """Negative ELBO in bits/dim, mean over images and its standard error: (mean, se).

    bpd(x_0) = (L_0 + sum_{t=2}^T L_{t-1} + L_T) / (D ln 2), the terms from elbo_terms
    (DDPM eq. 5, decoder eq. 13 with `levels` grey levels: 17 digits, 256 MNIST; None for
    continuous toy data), sigma_t^2 = beta_tilde_t or beta_t (`variance`). One noise draw per
    image and t, from `generator` (on the images' device); se = std / sqrt(N) over images.
    images: (N, ...) in [-1, 1]; put a model in eval mode first. Costs T model calls per batch.
    notebooks/05, sec. 6 (bits/dim).
    """
    check_tensor(images, "images", min_ndim=2)
    if len(images) < 2:
        raise ValueError(f"need at least 2 images for a standard error, got {len(images)}")
    dims = images[0].numel()
    bpd = torch.cat([bits_per_dim(elbo_terms(eps_model, batch, schedule, generator, variance, levels)
                                  .sum(dim=1), dims) for batch in images.split(batch_size)])
    bpd = bpd.cpu().double()                           # MPS has no float64
    return float(bpd.mean()), float(bpd.std() / math.sqrt(len(bpd)))
