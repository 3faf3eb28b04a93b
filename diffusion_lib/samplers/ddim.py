"""DDIM: deterministic (eta = 0) and stochastic sampling on a sub-sequence of steps, and inversion.

Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models". The DDIM paper writes alpha_t
for what DDPM and this library call alpha_bar_t. Derived in notebooks/06_ddim.ipynb.
"""
from __future__ import annotations

import numbers

import torch

from ..utils.validate import as_time, check_same_shape, check_tensor
from .loop import call_model, resolve_device, start_noise, steps_bar
from ..process.posterior import predict_x0
from ..process.schedules import Schedule, gather


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """The descending sub-sequence tau of 1..T: `steps` values, evenly spaced, starting at T.

    tau_i = floor(T (steps - i) / steps), i = 0..steps-1; the last DDIM step goes from tau[-1]
    to t = 0 (alpha_bar_0 = 1). DDIM (Song et al. 2020) sec. 4.2; notebooks/06, sec. 3.
    Example: T = 1000, steps = 50 gives [1000, 980, ..., 20]; steps = T gives [T, ..., 1].
    """
    for name, value in (("T", T), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in 1..T = 1..{T}, got {steps}")
    return [int(T) * k // int(steps) for k in range(int(steps), 0, -1)]


def ddim_sigma(schedule: Schedule, t, t_prev, eta: float, like: torch.Tensor | None = None) -> torch.Tensor:
    """sigma_t(eta) for the step t -> t_prev, shape (B, 1, ..., 1), like's dtype and device.

    sigma = eta sqrt((1 - alpha_bar_{t_prev}) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_{t_prev})
    DDIM (Song et al. 2020) eq. (16), in DDPM's notation; notebooks/06, eq. (2.3).
    eta = 0 is DDIM (deterministic); eta = 1 over all T steps is DDPM with sigma^2 = beta_tilde.
    Without `like`: float64 on the CPU, shape () for int t and t_prev, (B,) for LongTensors (B,)
    (the form of exercise 06.1).
    """
    if like is None:
        sizes = [torch.as_tensor(v).numel() for v in (t, t_prev) if not isinstance(v, numbers.Integral)]
        sigma = ddim_sigma(schedule, t, t_prev, eta, torch.zeros(max(sizes, default=1), dtype=torch.float64))
        return sigma.reshape(-1) if sizes else sigma.reshape(())
    f64 = torch.float32 if like.device.type == "mps" else torch.float64   # MPS has no float64
    ab_t = gather(schedule.alpha_bars, t, like, lo=1, dtype=f64)
    ab_prev = gather(schedule.alpha_bars, t_prev, like, lo=0, name="t_prev", dtype=f64)
    sigma = eta * ((1 - ab_prev) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_prev).sqrt()  # DDIM eq. (16)
    return sigma.to(like.dtype)


def ddim_step(xt: torch.Tensor, t, t_prev, eps: torch.Tensor, schedule: Schedule, eta: float = 0.0,
              noise: torch.Tensor | None = None, clip_x0: bool = False) -> torch.Tensor:
    """One DDIM step from x_t to x_{t_prev}, t_prev < t (t_prev may be 0).

    x0_hat   = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)                   (eq. 9)
    x_{t_prev} = sqrt(alpha_bar_{t_prev}) x0_hat                 "predicted x_0"
               + sqrt(1 - alpha_bar_{t_prev} - sigma_t^2) eps     "direction pointing to x_t"
               + sigma_t noise                                    "random noise"
    DDIM (Song et al. 2020) eq. (12), sigma_t(eta) from eq. (16); notebooks/06, sec. 2.

    xt, eps: (B, ...);  t: int or LongTensor (B,) in 1..T;  t_prev: in 0..T-1, below t.
    eta >= 0 (needs `noise` of xt's shape when eta > 0).
    clip_x0: clamp x0_hat to [-1, 1] and keep the network's eps in the direction term
    (notebooks/06, eq. 6.1): the variant of diffusers' DDIMScheduler with clip_sample=True (its
    default) and use_clipped_model_output=False. It is not DDPM's: DDPM's reference code clips
    x0_hat and takes mu_tilde(x_t, clip(x0_hat)), i.e. re-derives eps from the clipped x0_hat
    (improved-diffusion's ddim_sample does the same); notebooks/06, sec. 6 measures both.
    """
    check_tensor(xt, "xt")
    check_same_shape(xt, eps, "xt", "eps")
    if not isinstance(eta, numbers.Real) or not eta >= 0:
        raise ValueError(f"eta must be a number >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta!r}")
    if eta > 0:
        if noise is None:
            raise ValueError(f"eta = {eta} > 0 adds noise: pass noise of shape {tuple(xt.shape)}")
        check_same_shape(xt, noise, "xt", "noise")
    f64 = torch.float32 if xt.device.type == "mps" else torch.float64     # MPS has no float64
    ab_prev = gather(schedule.alpha_bars, t_prev, xt, lo=0, name="t_prev", dtype=f64)
    _check_order(t, t_prev, xt.shape[0])
    sigma = ddim_sigma(schedule, t, t_prev, eta, xt).to(f64)
    dir_coef = (1 - ab_prev - sigma ** 2)
    if eta > 1 and bool((dir_coef < -1e-12).any()):     # eta <= 1 keeps it >= 0 (eq. 16)
        raise ValueError(f"eta = {eta} is too large for this step: sigma_t^2 exceeds 1 - alpha_bar_t_prev")
    x0_hat = predict_x0(xt, t, eps, schedule)                    # DDIM eq. (9)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
    x_prev = (ab_prev.sqrt().to(xt.dtype) * x0_hat                # DDIM eq. (12): predicted x_0
              + dir_coef.clamp(min=0).sqrt().to(xt.dtype) * eps)  # direction pointing to x_t
    if eta > 0:
        x_prev = x_prev + sigma.to(xt.dtype) * noise             # random noise
    return x_prev


def _check_order(t, t_prev, batch: int) -> None:
    """Raise unless t_prev < t (checked where both are known on the CPU)."""
    a = t if isinstance(t, numbers.Integral) else (t if t.device.type == "cpu" else None)
    b = t_prev if isinstance(t_prev, numbers.Integral) else (t_prev if t_prev.device.type == "cpu" else None)
    if a is None or b is None:
        return
    a = as_time(a, batch, 1, 10**12, "cpu")
    b = as_time(b, batch, 0, 10**12, "cpu", name="t_prev")
    if bool((b >= a).any()):
        raise ValueError(f"t_prev must be smaller than t (DDIM steps go down in time), got "
                         f"t={a.tolist()[:4]} and t_prev={b.tolist()[:4]}")


@torch.no_grad()
def ddim_sample(model, shape, schedule: Schedule, steps: int = 50, eta: float = 0.0,
                generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
                clip_x0: bool = False, device=None, progress: bool = False, callback=None) -> torch.Tensor:
    """Sample x_0 with DDIM over the sub-sequence tau = ddim_timesteps(T, steps).

    x_T ~ N(0, I) (or the given x_T), then ddim_step from tau[i] to tau[i+1], the last to 0.
    With eta = 0 the map x_T -> x_0 is deterministic. DDIM (Song et al. 2020) sec. 4.2 and
    eq. (12); notebooks/06, sec. 3.
    model: callable (x_t, t) -> eps_hat, t a LongTensor (B,) in 1..T.
    callback(t_prev, x_t_prev): called after each step.  Returns x_0; float32 unless x_T says otherwise.
    """
    taus = ddim_timesteps(schedule.T, steps)
    if not isinstance(eta, numbers.Real) or not eta >= 0:
        raise ValueError(f"eta must be a number >= 0, got {eta!r}")
    device = resolve_device(model, x_T, device, generator)
    x = start_noise(shape, x_T, generator, device)
    for i in steps_bar(range(len(taus)), progress, f"DDIM eta={eta}"):
        t, t_prev = taus[i], (taus[i + 1] if i + 1 < len(taus) else 0)
        eps_hat = call_model(model, x, t)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device) if eta > 0 else None
        x = ddim_step(x, t, t_prev, eps_hat, schedule, eta, noise, clip_x0)
        if callback is not None:
            callback(t_prev, x)
    return x


@torch.no_grad()
def ddim_invert(model, x0: torch.Tensor, schedule: Schedule, steps: int = 50, progress: bool = False) -> torch.Tensor:
    """Encode x_0 into its DDIM latent x_T: the eta = 0 update run forward in time.

    For s -> t along 0, tau[-1], ..., tau[0] = T (s < t):
      eps_hat = model(x_s, t);  x_t = sqrt(alpha_bar_t) x0_hat(x_s, s, eps_hat) + sqrt(1 - alpha_bar_t) eps_hat
    DDIM (Song et al. 2020) eq. (13) read as an ODE and integrated from 0 to T, sec. 4.3 and 5.4;
    the model is evaluated at the target time t (so it is always called with t in 1..T).
    ddim_sample(model, ..., steps, eta=0, x_T=ddim_invert(model, x0, ..., steps)) returns x0
    up to a discretisation error that falls as steps grows. notebooks/07, sec. 3.
    x0: (B, ...) in [-1, 1].  Returns x_T of x0's shape and dtype.
    """
    check_tensor(x0, "x0")
    taus = ddim_timesteps(schedule.T, steps)[::-1]              # ascending: tau[-1], ..., T
    x, s = x0.clone(), 0
    for t in steps_bar(taus, progress, "DDIM inversion"):
        eps_hat = call_model(model, x, t)
        x0_hat = predict_x0(x, s, eps_hat, schedule)             # DDIM eq. (9) at time s
        x = (gather(schedule.sqrt_alpha_bars, t, x) * x0_hat
             + gather(schedule.sqrt_one_minus_alpha_bars, t, x) * eps_hat)  # DDIM eq. (12), sigma = 0, s -> t
        s = t
    return x
