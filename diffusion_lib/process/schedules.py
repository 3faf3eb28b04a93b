"""Noise schedules: beta_t, alpha_t, alpha_bar_t on the paper's time index.

Convention (docs/design.md): t runs over 0..T and x_0 is data. Every array has length T+1 and index 0
is the clean state: betas[0] = 0, alphas[0] = 1, alpha_bars[0] = 1, and
alpha_bars[t] = prod_{s=1..t} (1 - beta_s). The model is called with integer t in 1..T.

Mapping to 0-based libraries (diffusers, improved-diffusion): their timestep k in 0..T-1 is our
t = k + 1, and their `alphas_cumprod[k]` is our `alpha_bars[k + 1]`.

The DDIM paper (Song et al. 2020) writes alpha_t for what DDPM (and this library) calls alpha_bar_t.

Derived in notebooks/01_forward_process.ipynb, sections 1-3.
"""
from __future__ import annotations

import math
import numbers
import weakref
from dataclasses import dataclass, field
from functools import cached_property

import torch

from ..utils.validate import as_time, check_choice


@dataclass(frozen=True, eq=False)
class Schedule:
    """A variance schedule on the paper's index t = 0..T; float64 arrays of shape (T+1,).

    beta_t        forward step variance, DDPM eq. (2); betas[0] = 0
    alpha_t       = 1 - beta_t
    alpha_bar_t   = prod_{s<=t} alpha_s, DDPM eq. (4); alpha_bars[0] = 1
    beta_tilde_t  = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t, DDPM eq. (7);
                    the posterior variance, 0 at t = 0 and t = 1

    Build one with `linear_schedule` or `cosine_schedule`, or `Schedule(betas)` from any
    (T+1,) array with betas[0] = 0 and 0 < betas[t] < 1 for t >= 1. The dataclass is frozen but
    its tensors are not: treat them as read-only (build a new Schedule to change betas).
    """

    betas: torch.Tensor
    name: str = "custom"
    alphas: torch.Tensor = field(init=False)
    alpha_bars: torch.Tensor = field(init=False)
    beta_tildes: torch.Tensor = field(init=False)

    def __post_init__(self):
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().clone().cpu()
        if betas.ndim != 1 or betas.numel() < 2:
            raise ValueError(f"betas must be a 1-D array of length T+1 >= 2, got shape "
                             f"{tuple(betas.shape)}")
        if betas[0] != 0:
            raise ValueError(f"betas[0] must be 0 (index 0 is the clean state x_0), got "
                             f"{float(betas[0])}")
        inner = betas[1:]
        if not bool(torch.isfinite(inner).all()) or bool((inner <= 0).any()) or bool((inner >= 1).any()):
            raise ValueError(f"betas[1:] must lie strictly between 0 and 1, got values from "
                             f"{float(inner.min())} to {float(inner.max())}")
        alphas = 1.0 - betas                                   # DDPM sec. 2
        alpha_bars = torch.cumprod(alphas, dim=0)              # DDPM eq. (4); alpha_bars[0] = 1
        beta_tildes = torch.zeros_like(betas)
        beta_tildes[1:] = (1 - alpha_bars[:-1]) / (1 - alpha_bars[1:]) * betas[1:]  # DDPM eq. (7)
        for name, value in [("betas", betas), ("alphas", alphas), ("alpha_bars", alpha_bars),
                            ("beta_tildes", beta_tildes)]:
            value.requires_grad_(False)
            object.__setattr__(self, name, value)

    @property
    def T(self) -> int:
        """Number of diffusion steps; arrays have length T+1."""
        return self.betas.numel() - 1

    @cached_property
    def sqrt_alpha_bars(self) -> torch.Tensor:
        """sqrt(alpha_bar_t), the signal coefficient of DDPM eq. (4); float64 (T+1,)."""
        return self.alpha_bars.sqrt()

    @cached_property
    def sqrt_one_minus_alpha_bars(self) -> torch.Tensor:
        """sqrt(1 - alpha_bar_t), the noise coefficient of DDPM eq. (4); float64 (T+1,)."""
        return (1 - self.alpha_bars).sqrt()

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t), shape (T+1,); snr[0] = inf.

        Kingma et al. 2021 (Variational Diffusion Models), eq. (2); notebooks/01, sec. 3.
        """
        return self.alpha_bars / (1 - self.alpha_bars)

    @cached_property
    def lambdas(self) -> torch.Tensor:
        """lambda_t = log(sqrt(alpha_bar_t) / sqrt(1 - alpha_bar_t)), half the log-SNR; float64 (T+1,).

        lambda_0 = +inf (x_0 carries no noise); lambda_t falls as t grows. The time variable of
        DPM-Solver (Lu et al. 2022, sec. 3.1) and DPM-Solver++ (Lu et al. 2022b); notebooks/08, sec. 4.
        """
        return 0.5 * (self.alpha_bars.log() - torch.log1p(-self.alpha_bars))   # log-SNR / 2; notebooks/08, eq. (4.3)

    def __repr__(self) -> str:
        return (f"Schedule({self.name}, T={self.T}, alpha_bar_T={float(self.alpha_bars[-1]):.3g}, "
                f"beta_1={float(self.betas[1]):.3g}, beta_T={float(self.betas[-1]):.3g})")


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Linear betas from `beta_start` at t = 1 to `beta_end` at t = T (DDPM, Ho et al. 2020, sec. 4).

    beta_t = beta_start + (t - 1) / (T - 1) * (beta_end - beta_start),  t = 1..T;  beta_0 = 0.
    notebooks/01_forward_process.ipynb, sec. 3.
    """
    _check_T(T)
    if T < 2:
        raise ValueError(f"linear_schedule needs T >= 2 (beta runs from beta_start at t = 1 to "
                         f"beta_end at t = T), got T={T}; build Schedule(betas) for one step")
    if not (0 < beta_start < 1 and 0 < beta_end < 1):
        raise ValueError(f"beta_start and beta_end must lie strictly between 0 and 1, got "
                         f"beta_start={beta_start}, beta_end={beta_end}")
    if beta_start > beta_end:
        raise ValueError(f"beta_start must not exceed beta_end (betas grow with t), got "
                         f"beta_start={beta_start} > beta_end={beta_end}")
    betas = torch.zeros(T + 1, dtype=torch.float64)
    betas[1:] = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return Schedule(betas, name="linear (Ho et al. 2020)")


def scaled_linear_schedule(T: int, max_beta: float = 0.999) -> Schedule:
    """DDPM's linear schedule stretched to T steps: betas 1e-4 * 1000/T .. 0.02 * 1000/T, clipped.

    Scaling the betas by 1000/T keeps sum(beta_t) ~ 10 and alpha_bar_T small for every T, so runs
    with different T are comparable (Nichol & Dhariwal 2021, sec. 2.4 scale DDPM's betas the
    same way). Betas are clipped at max_beta for T <= 20. notebooks/03, sec. 6.
    """
    _check_T(T)
    betas = torch.zeros(T + 1, dtype=torch.float64)
    betas[1:] = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64).clamp(max=max_beta)
    return Schedule(betas, name=f"linear (Ho et al. 2020) rescaled to T={T}")


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17), betas clipped at `max_beta`.

    alpha_bar(t) = f(t) / f(0),  f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2,
    beta_t = min(1 - alpha_bar(t) / alpha_bar(t-1), max_beta);  alpha_bars are then recomputed
    from the clipped betas, so the Schedule stays consistent. notebooks/01, sec. 3.
    """
    _check_T(T)
    if not 0 <= s < 1:
        raise ValueError(f"the cosine offset s must lie in [0, 1), got {s}")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie strictly between 0 and 1, got {max_beta}")
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = torch.zeros(T + 1, dtype=torch.float64)
    betas[1:] = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=1e-12, max=max_beta)
    return Schedule(betas, name="cosine (Nichol & Dhariwal 2021)")


def previous(values: torch.Tensor) -> torch.Tensor:
    """values[t-1] at index t, shape (T+1,): alpha_bar_{t-1} from alpha_bar_t, for example.

    Index 0 repeats values[0] (for alpha_bars that is alpha_bar_0 = 1, never read at t = 0).
    """
    return torch.cat([values[:1], values[:-1]])


VARIANCES = ("beta_tilde", "beta")


def reverse_variance(schedule: Schedule, variance: str = "beta_tilde") -> torch.Tensor:
    """sigma_t^2 of the reverse step, float64 (T+1,): beta_tilde_t or beta_t.

    DDPM (Ho et al. 2020) sec. 3.2: both choices give similar samples; beta_tilde_t is optimal
    for a single data point x_0, beta_t for x_0 ~ N(0, I). notebooks/05, sec. 1.
    """
    check_choice(variance, "variance", VARIANCES)
    return schedule.beta_tildes if variance == "beta_tilde" else schedule.betas


def gather(values: torch.Tensor, t, like: torch.Tensor, lo: int = 0, name: str = "t",
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """values[t] for each sample, on like's device, shaped (B, 1, ..., 1) to broadcast against like.

    The one helper for "take the schedule at t and broadcast against x" (STYLE.md, 12).
    values: (T+1,) float64 schedule array;  t: int or LongTensor (B,) in lo..T;  like: (B, ...).
    The result has like's dtype unless `dtype` is given. For a Python int t the value is read in
    float64 on the CPU and filled in, so a sampling loop moves no schedule array to the device.
    """
    T = values.numel() - 1
    dtype = like.dtype if dtype is None else dtype
    shape = (like.shape[0],) + (1,) * (like.ndim - 1)
    if isinstance(t, int) and not isinstance(t, bool):
        as_time(t, like.shape[0], lo, T, "cpu", name=name)      # range check only
        return torch.full(shape, float(values[t]), dtype=dtype, device=like.device)
    t = as_time(t, like.shape[0], lo, T, like.device, name=name)
    return _on_device(values, like.device, dtype)[t].reshape(shape)


_DEVICE_COPIES: "weakref.WeakKeyDictionary[torch.Tensor, dict]" = weakref.WeakKeyDictionary()


def _on_device(values: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """values cast and moved once per (device, dtype) and kept while `values` lives: a training
    step on a GPU then gathers on the device, without a host-to-device copy (and its sync)."""
    if device.type == "cpu":
        return values.to(dtype=dtype)
    copies = _DEVICE_COPIES.setdefault(values, {})
    key = (device, dtype)
    if key not in copies:
        copies[key] = values.to(device=device, dtype=dtype)
    return copies[key]


def _check_T(T) -> None:
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1:
        raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
