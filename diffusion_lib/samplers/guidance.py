"""Classifier-free guidance: a class-conditional eps-model made into a sampler's (x_t, t) -> eps callable.

Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. (6):

    eps_tilde(x_t, t, c) = (1 + w) eps(x_t, t, c) - w eps(x_t, t, null)
                         = -sqrt(1 - alpha_bar_t) [grad log q_t(x_t | c) + w grad log q_t(c | x_t)]

(the second line when both eps are exact: Tweedie's eps = -sqrt(1 - alpha_bar_t) grad log q_t and
Bayes' rule, grad log q_t(c | x) = grad log q_t(x | c) - grad log q_t(x); notebooks/09, secs. 1-2).
One network learns both terms by label dropout (training/loop.py, drop_labels). Derived in
notebooks/09_guidance.ipynb. The samplers stay model-agnostic: ddpm_sample, ddim_sample,
ddim_invert and dpm_solver_sample take guided(model, y, w) like any model.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from ..utils.validate import INT_DTYPES


def num_classes_of(model) -> int:
    """C of a class-conditional model: model.config.num_classes (a UNet or a FastModel around one), or
    model.num_classes (any other callable (x_t, t, y) -> eps, such as the toy mixture's oracle); 0 if none."""
    config = getattr(model, "config", None)
    C = getattr(config, "num_classes", None)
    C = getattr(model, "num_classes", 0) if C is None else C
    return int(C or 0)


def _checked_labels(y, C: int) -> torch.Tensor:
    """y as a LongTensor (B,) on the CPU, or a 0-d one for a single int label; raises unless in 0..C-1."""
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        y = torch.tensor(int(y))
    if not isinstance(y, torch.Tensor) or y.dtype not in INT_DTYPES or y.ndim > 1:
        got = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else repr(y)
        raise TypeError(f"y must be an int or a LongTensor (B,) of labels, got {got}")
    y = y.detach().to("cpu", torch.long)
    if y.numel() and not 0 <= int(y.min()) <= int(y.max()) <= C - 1:
        raise ValueError(f"labels for guidance must lie in 0..{C - 1} (this model has {C} classes; {C} is the "
                         f"null label, which guidance subtracts), got values {int(y.min())}..{int(y.max())}")
    return y


class Guided(nn.Module):
    """(x_t, t) -> eps_tilde of a class-conditional `model` for labels y and guidance weight w: guided()."""

    def __init__(self, model, y, w: float, interval=None):
        super().__init__()
        C = num_classes_of(model)
        if not C:
            raise ValueError(f"guided() needs a class-conditional model (UNetConfig(num_classes=C), trained with "
                             f"TrainConfig(conditional=True)); this {type(model).__name__} has no classes")
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ValueError(f"the guidance weight w must be a finite number >= 0 (0: the conditional model "
                             f"as it is), got {w!r}")
        self.model, self.y, self.w, self.null = model, _checked_labels(y, C), float(w), C
        self.interval = _checked_interval(interval)

    def labels(self, B: int, device) -> torch.Tensor:
        """y as a LongTensor (B,) on `device`."""
        if self.y.ndim == 0:
            return self.y.expand(B).to(device)
        if self.y.shape[0] != B:
            raise ValueError(f"guided() was given {self.y.shape[0]} labels but the sampler's batch has {B} images")
        return self.y.to(device)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = self.labels(x.shape[0], x.device)
        if self.w == 0:
            return self.model(x, t, y)                                        # plain conditional sampling
        null = torch.full_like(y, self.null)
        eps_c, eps_u = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        w = self.w
        if self.interval is not None:                                         # guidance in [t_lo, t_hi] only
            inside = (t >= self.interval[0]) & (t <= self.interval[1])  # Kynkaanniemi et al. 2024; notebooks/09, 5.2
            w = self.w * inside.to(eps_c.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return (1 + w) * eps_c - w * eps_u                  # Ho & Salimans eq. (6); notebooks/09, eq. (1.6)

    def __repr__(self) -> str:
        y = int(self.y) if self.y.ndim == 0 else f"{self.y.shape[0]} labels"
        where = "" if self.interval is None else f", interval={self.interval}"
        return f"guided({type(self.model).__name__}, y={y}, w={self.w:g}{where})"


def _checked_interval(interval):
    """(t_lo, t_hi) as two ints with 1 <= t_lo <= t_hi, or None (guidance at every t)."""
    if interval is None:
        return None
    try:
        lo, hi = (int(v) for v in interval)
        ok = all(not isinstance(v, bool) and float(v) == int(v) for v in interval) and 1 <= lo <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"interval must be two time steps (t_lo, t_hi) with 1 <= t_lo <= t_hi, got {interval!r}")
    return lo, hi


def guided(model, y, w: float, interval=None) -> Guided:
    """Classifier-free guidance: the callable (x_t, t) -> eps_tilde that every sampler takes.

    eps_tilde = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null)       Ho & Salimans 2022, eq. (6)
    notebooks/09, eq. (1.6). w = 0 is plain conditional sampling (one network call); w > 0 evaluates
    both terms in ONE network call on a doubled batch [x_t, x_t] with labels [y, null].
    Other papers and libraries write the same thing with the guidance scale 1 + w: eps_u + (1 + w)(eps_c - eps_u)
    (diffusers' guidance_scale, Stable Diffusion's cfg scale 7.5 is w = 6.5).

    model: class-conditional, (x_t, t, y) -> eps, with model.config.num_classes = C (a UNet, or a
      FastModel around one) or model.num_classes = C; the null label is C.
    y: an int label in 0..C-1 for every image, or a LongTensor (B,) of labels, one per image.
    w: guidance weight, a finite number >= 0.
    interval: (t_lo, t_hi) to guide only at those time steps and sample conditionally (w = 0)
      elsewhere: Kynkaanniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample
      and Distribution Quality in Diffusion Models", who find guidance at high noise levels costs
      diversity and buys little (notebooks/09 measures it). None (default): every t, eq. (6) as written.
    Returns an nn.Module around `model` (so the samplers find its device): guided(...)(x_t, t).
    """
    return Guided(model, y, w, interval)


class Unconditional(nn.Module):
    """(x_t, t) -> eps(x_t, t, null) of a class-conditional model: unconditional()."""

    def __init__(self, model):
        super().__init__()
        self.model, self.null = model, num_classes_of(model)
        if not self.null:
            raise ValueError(f"unconditional() needs a class-conditional model; this {type(model).__name__} "
                             f"is unconditional already: use it as it is")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t, torch.full((x.shape[0],), self.null, dtype=torch.long, device=x.device))


def unconditional(model) -> Unconditional:
    """(x_t, t) -> eps(x_t, t, null): what a class-conditional model learned without labels (label
    dropout, Ho & Salimans 2022, sec. 3.2). For the likelihood, or to sample without a class."""
    return Unconditional(model)
