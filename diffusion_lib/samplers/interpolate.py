"""Interpolating between noise codes x_T: spherical (slerp) and, to show why not, linear (lerp).

A Gaussian code z ~ N(0, I) in D dimensions has norm close to sqrt(D); the straight line between
two codes passes through shorter vectors (at lam = 1/2 about 1/sqrt(2) of the norm), which the
model never saw. slerp keeps the norm. DDIM (Song et al. 2020) sec. 5.3 uses slerp;
Shoemake 1985 for the formula. notebooks/07, sec. 2.
"""
from __future__ import annotations

import torch

from ..utils.validate import check_same_shape, check_tensor


def _lam_like(lam, z0: torch.Tensor) -> torch.Tensor:
    lam = torch.as_tensor(lam, dtype=z0.dtype, device=z0.device)
    if lam.ndim == 0:
        lam = lam.expand(z0.shape[0])
    if lam.shape != (z0.shape[0],):
        raise ValueError(f"lam must be a number or a tensor of shape ({z0.shape[0]},), got {tuple(lam.shape)}")
    return lam.reshape(-1, *([1] * (z0.ndim - 1)))


def slerp(z0: torch.Tensor, z1: torch.Tensor, lam) -> torch.Tensor:
    """Spherical interpolation per sample: lam = 0 gives z0, lam = 1 gives z1.

    theta = arccos( <z0, z1> / (|z0| |z1|) )
    slerp = sin((1 - lam) theta) / sin(theta) z0 + sin(lam theta) / sin(theta) z1
    DDIM (Song et al. 2020) sec. 5.3; notebooks/07, sec. 2.
    z0, z1: (B, ...) of one shape;  lam: number or tensor (B,).  Returns (B, ...).
    For independent unit Gaussian codes the result has unit variance for every lam.
    """
    check_tensor(z0, "z0")
    check_same_shape(z0, z1, "z0", "z1")
    lam = _lam_like(lam, z0)
    a, b = z0.reshape(z0.shape[0], -1), z1.reshape(z1.shape[0], -1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1.0, 1.0)).reshape(lam.shape)
    sin = torch.sin(theta)
    near = sin.abs() < 1e-6                                     # (anti)parallel codes: fall back to lerp
    w0 = torch.where(near, 1 - lam, torch.sin((1 - lam) * theta) / torch.where(near, 1.0, sin))
    w1 = torch.where(near, lam, torch.sin(lam * theta) / torch.where(near, 1.0, sin))
    return w0 * z0 + w1 * z1


def lerp(z0: torch.Tensor, z1: torch.Tensor, lam) -> torch.Tensor:
    """Linear interpolation (1 - lam) z0 + lam z1: shrinks Gaussian codes, shown for contrast.

    For independent unit Gaussians the variance is (1 - lam)^2 + lam^2 (1/2 at lam = 1/2).
    notebooks/07, sec. 2.  z0, z1: (B, ...);  lam: number or tensor (B,).
    """
    check_tensor(z0, "z0")
    check_same_shape(z0, z1, "z0", "z1")
    lam = _lam_like(lam, z0)
    return (1 - lam) * z0 + lam * z1
