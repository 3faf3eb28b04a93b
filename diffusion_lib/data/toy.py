"""Toy data with closed-form answers: a Gaussian and a Gaussian mixture in D dimensions.

For these laws every quantity the course needs is exact: the marginal q(x_t), the optimal
denoiser eps*(x_t, t) = E[eps | x_t], and log p(x_0). The derivation notebooks and the sampler
tests use them as oracles: a sampler driven by eps* needs no training. notebooks/03, sec. 6;
notebooks/06, sec. 4.

Diagonal covariances only: every dimension is an independent 1-D problem (the mixture couples
dimensions through the shared component). Arrays are float64 unless stated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..process.schedules import Schedule, gather


def _as64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """p(x_0) = sum_k w_k N(x_0; mu_k, diag(s_k^2)).  weights (K,), means (K, D), stds (K, D).

    A single Gaussian is the case K = 1 (see `gaussian`).
    """

    weights: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor

    def __post_init__(self):
        w, m, s = _as64(self.weights).reshape(-1), _as64(self.means), _as64(self.stds)
        if m.ndim == 1:
            m = m.reshape(-1, 1)
        s = s.reshape(m.shape) if s.numel() == m.numel() else s.expand(m.shape).clone()
        if w.numel() != m.shape[0]:
            raise ValueError(f"weights has {w.numel()} entries but means has {m.shape[0]} components")
        if bool((w <= 0).any()) or abs(float(w.sum()) - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {w.tolist()}")
        if bool((s <= 0).any()):
            raise ValueError("stds must be positive")
        for name, value in (("weights", w), ("means", m), ("stds", s)):
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of x_0, shape (n, D), float64."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k] * z

    def marginal(self, t: int, schedule: Schedule) -> "GaussianMixture":
        """q(x_t) = sum_k w_k N(sqrt(alpha_bar_t) mu_k, alpha_bar_t s_k^2 + 1 - alpha_bar_t).

        DDPM eq. (4) applied to each component; notebooks/01, sec. 2.
        """
        ab = float(schedule.alpha_bars[t])
        return GaussianMixture(self.weights, math.sqrt(ab) * self.means,
                               (ab * self.stds ** 2 + 1 - ab).sqrt())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x of shape (n, D) (float64); returns (n,), in nats."""
        x = _as64(x).reshape(-1, 1, self.dim)
        comp = (-0.5 * ((x - self.means) / self.stds) ** 2 - self.stds.log()
                - 0.5 * math.log(2 * math.pi)).sum(-1)          # (n, K)
        return torch.logsumexp(comp + self.weights.log(), dim=1)

    def optimal_eps(self, xt: torch.Tensor, t, schedule: Schedule) -> torch.Tensor:
        """eps*(x_t, t) = E[eps | x_t], the minimiser of L_simple (Tweedie's formula).

        E[eps | x_t] = -sqrt(1 - alpha_bar_t) grad log q(x_t); for each component
        E_k[eps | x_t] = sqrt(1 - alpha_bar_t) (x_t - sqrt(alpha_bar_t) mu_k) / v_k,
        v_k = alpha_bar_t s_k^2 + 1 - alpha_bar_t, weighted by the responsibilities r_k(x_t).
        notebooks/03, sec. 6.  xt: (B, D) any float dtype; t: int or LongTensor (B,) in 1..T.
        """
        x = xt.to(torch.float64).reshape(xt.shape[0], 1, self.dim)
        ab = gather(schedule.alpha_bars, t, x, lo=1)           # (B, 1, 1)
        mean_k = ab.sqrt() * self.means                          # (B, K, D)
        var_k = ab * self.stds ** 2 + 1 - ab
        log_r = (-0.5 * (x - mean_k) ** 2 / var_k - 0.5 * var_k.log()).sum(-1) + self.weights.log()
        r = torch.softmax(log_r, dim=1).unsqueeze(-1)            # responsibilities (B, K, 1)
        eps_k = (1 - ab).sqrt() * (x - mean_k) / var_k
        return (r * eps_k).sum(1).to(xt.dtype).reshape(xt.shape)

    def eps_model(self, schedule: Schedule):
        """The optimal denoiser as a model callable (x_t, t) -> eps_hat for the samplers."""
        return lambda xt, t: self.optimal_eps(xt, t, schedule)

    def given(self, components) -> "GaussianMixture":
        """p(x_0 | the component is one of `components`): those components alone, weights renormalised.

        components: indices, or a boolean mask of length K. With classes made of components, this is
        p(x_0 | c) (notebooks/09, sec. 2).
        """
        keep = torch.as_tensor(components)
        keep = keep.nonzero().reshape(-1) if keep.dtype == torch.bool else keep.reshape(-1).long()
        if keep.numel() == 0:
            raise ValueError("given() needs at least one component")
        w = self.weights[keep]
        return GaussianMixture(w / w.sum(), self.means[keep], self.stds[keep])

    def class_eps_model(self, schedule: Schedule, classes) -> "ClassOracle":
        """The exact class-conditional denoiser, a model for guided(): (x_t, t, y) -> E[eps | x_t, c = y].

        classes: (K,) ints, the class 0..C-1 of each component (every class used). y = C, the null
        label, gives E[eps | x_t] of the whole mixture, as label dropout trains it (notebooks/09, sec. 2).
        """
        return ClassOracle(self, torch.as_tensor(classes).long(), schedule)


class ClassOracle:
    """(x_t, t, y) -> E[eps | x_t, c = y] of a mixture whose components carry classes; num_classes = C.

    Class c is the mixture of its components (GaussianMixture.given), y = C the whole mixture; each
    is the exact optimal_eps (Tweedie). x_t: (B, D); t: int or LongTensor (B,); y: LongTensor (B,).
    """

    def __init__(self, mixture: GaussianMixture, classes: torch.Tensor, schedule: Schedule):
        if classes.shape != mixture.weights.shape or int(classes.min()) < 0:
            raise ValueError(f"classes must give a class >= 0 to each of the {len(mixture.weights)} components, "
                             f"got {classes.tolist()}")
        self.num_classes = int(classes.max()) + 1
        self.laws = [mixture.given(classes == c) for c in range(self.num_classes)] + [mixture]   # p(x|c), p(x)
        self.schedule = schedule

    def __call__(self, xt: torch.Tensor, t, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.shape != (xt.shape[0],):
            raise ValueError(f"y must be a LongTensor of shape ({xt.shape[0]},), got {y!r}")
        eps = torch.stack([law.optimal_eps(xt, t, self.schedule) for law in self.laws])       # (C + 1, B, ...)
        return eps[y.to(eps.device), torch.arange(xt.shape[0], device=eps.device)]


def gaussian(mean, std) -> GaussianMixture:
    """N(mean, diag(std^2)) as a one-component mixture; mean and std of shape (D,) or scalars."""
    mean = _as64(mean).reshape(1, -1)
    std = _as64(std).reshape(1, -1).expand(mean.shape)
    return GaussianMixture(torch.ones(1, dtype=torch.float64), mean, std)
