"""DPM-Solver++: a second-order solver of the probability-flow ODE, one network call per step.

Lu, Zhou, Bao, Chen, Li & Zhu 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models" (arXiv 2211.01095), multistep and in the data-prediction form: the ODE is
solved for x_t / b_t in the half log-SNR lambda_t (Schedule.lambdas), where its linear part is
exact and only x0_hat must be approximated. Derived in notebooks/08_score_and_ode.ipynb, sec. 4.

Notation (notebook 00, sec. 4; notebook 08, sec. 4.2). a_t = sqrt(alpha_bar_t) and
b_t = sqrt(1 - alpha_bar_t), the scales of signal and noise in x_t (DPM-Solver writes them alpha_t
and sigma_t; the course keeps alpha_t = 1 - beta_t and sigma_t for the reverse step's noise);
lambda_t = log(a_t / b_t); h = lambda_{t_prev} - lambda_t > 0 for a step from t down to t_prev;
rho = h_last / h, the ratio of the last step to this one (DPM-Solver++'s r_i = h_{i-1} / h_i).
"""
from __future__ import annotations

import math
import numbers

import torch

from ..process.posterior import predict_x0
from ..process.schedules import Schedule
from ..utils.validate import check_same_shape, check_tensor
from .ddim import ddim_timesteps
from .loop import call_model, resolve_device, start_noise, steps_bar

ORDERS = (1, 2)


def _coefficients(schedule: Schedule, t: int, t_prev: int):
    """(b_{t_prev} / b_t, a_{t_prev} (1 - e^{-h}), h) in float64 for ints t > t_prev >= 0: the
    coefficients of the first-order step, DPM-Solver++ (Lu et al. 2022b) sec. 4.1; notebooks/08, eqs. (4.3), (4.6)."""
    ab = schedule.alpha_bars
    sigma_ratio = math.sqrt((1 - float(ab[t_prev])) / (1 - float(ab[t])))  # b_{t_prev}/b_t; notebooks/08, (4.6)
    h = float(schedule.lambdas[t_prev] - schedule.lambdas[t])  # h (inf at t_prev = 0); notebooks/08, eq. (4.3)
    x0_coef = math.sqrt(float(ab[t_prev])) * -math.expm1(-h)  # a_{t_prev} (1 - e^{-h}); notebooks/08, eq. (4.6)
    return sigma_ratio, x0_coef, h


def dpm_solver_step(xt: torch.Tensor, t: int, t_prev: int, x0_hat: torch.Tensor, schedule: Schedule,
                    x0_hat_last: torch.Tensor | None = None, t_last: int | None = None) -> torch.Tensor:
    """One DPM-Solver++ step from x_t down to x_{t_prev}: first order, or 2M with the last step's x0_hat.

    First order (DPM-Solver++1, the same step as deterministic DDIM):
        x_{t_prev} = (b_{t_prev} / b_t) x_t + a_{t_prev} (1 - e^{-h}) x0_hat
    with a_t = sqrt(alpha_bar_t) and b_t = sqrt(1 - alpha_bar_t) (see the module docstring's notation).
    2M (x0_hat_last = x0_hat at the grid time t_last > t, the step before):
        rho = h_last / h,  h_last = lambda_t - lambda_{t_last}
        D = (1 + 1 / (2 rho)) x0_hat - 1 / (2 rho) x0_hat_last,  then D in place of x0_hat above
    DPM-Solver++ (Lu et al. 2022b) sec. 4.1 and Algorithm 2; notebooks/08, eqs. (4.6) and (4.8).

    xt, x0_hat, x0_hat_last: (B, ...) of one shape;  t, t_prev, t_last: ints with t_last > t > t_prev >= 0.
    A step to t_prev = 0 must be first order: lambda_0 = +inf, so h is infinite (see dpm_solver_sample).
    """
    for name, value in (("t", t), ("t_prev", t_prev)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int time step, got {type(value).__name__}")
    check_tensor(xt, "xt")
    check_same_shape(xt, x0_hat, "xt", "x0_hat")
    if not 0 <= t_prev < t <= schedule.T:
        raise ValueError(f"need 0 <= t_prev < t <= T = {schedule.T} (steps go down in time), "
                         f"got t={t}, t_prev={t_prev}")
    sigma_ratio, x0_coef, h = _coefficients(schedule, t, t_prev)
    D = x0_hat
    if x0_hat_last is not None:
        if t_last is None or not t < t_last <= schedule.T:
            raise ValueError(f"x0_hat_last needs the time it was computed at, t_last in {t + 1}..{schedule.T}, "
                             f"got {t_last}")
        check_same_shape(xt, x0_hat_last, "xt", "x0_hat_last")
        if t_prev == 0:
            raise ValueError("the step to t = 0 must be first order (lambda_0 = inf: the linear extrapolation of "
                             "x0_hat would be infinite); pass x0_hat_last=None")
        r = float(schedule.lambdas[t] - schedule.lambdas[t_last]) / h    # rho = h_last / h, Algorithm 2's r_i
        D = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_hat_last      # Algorithm 2: D_i; notebooks/08, eq. (4.8)
    return sigma_ratio * xt + x0_coef * D           # DPM-Solver++ sec. 4.1, first order in D; notebooks/08, eq. (4.6)


def logsnr_timesteps(schedule: Schedule, steps: int) -> list[int]:
    """`steps` descending integer times from T, spaced (as nearly as integers allow) evenly in lambda_t.

    Targets lambda_T + (lambda_1 - lambda_T) i / (steps - 1), i = 0..steps-1, each rounded to the
    time with the nearest lambda_t, then pushed apart so that the times decrease strictly. The step
    sizes uniform in lambda that the DPM-Solver papers recommend (Lu et al. 2022, "logSNR"); an option
    of dpm_solver_sample, whose default is DDIM's grid. notebooks/08, secs. 4 and 6.
    """
    ddim_timesteps(schedule.T, steps)                                      # the same checks of T and steps
    lam = schedule.lambdas[1:]                                             # lambda_1 .. lambda_T, decreasing
    if steps == 1:
        return [schedule.T]
    targets = lam[-1] + (lam[0] - lam[-1]) * torch.arange(steps, dtype=torch.float64) / (steps - 1)
    times = [int((lam - target).abs().argmin()) + 1 for target in targets]
    for i in range(steps - 2, -1, -1):                                     # the i-th from the end >= i + 1
        times[i] = max(times[i], times[i + 1] + 1)
    times[0] = schedule.T
    for i in range(1, steps):                                              # strictly decreasing from T
        times[i] = min(times[i], times[i - 1] - 1)
    return times


def _check_sampler_args(model, order, steps, timesteps, T: int) -> list[int]:
    if not callable(model):
        raise TypeError(f"model must be a callable (x_t, t) -> eps_hat, got {type(model).__name__}")
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"order must be 1 (DPM-Solver++1, which is DDIM) or 2 (DPM-Solver++(2M)), got {order!r}")
    taus = ddim_timesteps(T, steps)
    if timesteps is None:
        return taus
    times = list(timesteps)
    if len(times) != steps or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in times) \
            or times[0] != T or any(b >= a for a, b in zip(times, times[1:])) or times[-1] < 1:
        raise ValueError(f"timesteps must be {steps} (= steps) strictly decreasing ints from T = {T} down to >= 1, "
                         f"got {times[:6]}{' ...' if len(times) > 6 else ''}")
    return [int(s) for s in times]


@torch.no_grad()
def dpm_solver_sample(model, shape, schedule: Schedule, steps: int = 20, order: int = 2,
                      generator: torch.Generator | None = None, x_T: torch.Tensor | None = None, device=None,
                      progress: bool = False, callback=None, timesteps=None) -> torch.Tensor:
    """Sample x_0 by solving the probability-flow ODE with DPM-Solver++ (multistep, data prediction).

    One network call per step, at the times tau = ddim_timesteps(T, steps) (DDIM's grid), then a
    last step to 0. Each call gives x0_hat = predict_x0(x_t, t, eps_hat) (DDIM eq. 9); dpm_solver_step
    moves x_t to the next time. order=1 is DPM-Solver++1, which is exactly deterministic DDIM
    (ddim_sample with eta = 0), up to rounding. order=2 is DPM-Solver++(2M) (Lu et al. 2022b,
    Algorithm 2): from the second step on it extrapolates x0_hat linearly in lambda from the last two
    calls. The first step has no earlier call and is first order. The last step, to t = 0, is first
    order too: lambda_0 = +inf, so that step is infinitely long in lambda and a linear extrapolation
    of x0_hat over it would be infinite; the first-order step returns x0_hat(x_{tau_last}) itself,
    as DDIM's last step does. notebooks/08, sec. 4.

    model: callable (x_t, t) -> eps_hat, t a LongTensor (B,) in 1..T.  steps: 1..T network calls.
    timesteps: another grid of `steps` strictly decreasing ints from T (e.g. logsnr_timesteps).
    generator: draws x_T when x_T is None (the solver itself is deterministic).
    callback(t_prev, x_t_prev): called after each step, as in ddim_sample.
    Returns x_0 of x_T's shape; float32 unless x_T says otherwise.
    """
    taus = _check_sampler_args(model, order, steps, timesteps, schedule.T)
    device = resolve_device(model, x_T, device, generator)
    x = start_noise(shape, x_T, generator, device)
    x0_hat_last = t_last = None
    for i in steps_bar(range(len(taus)), progress, f"DPM-Solver++({order}M)" if order == 2 else "DPM-Solver++1"):
        t, t_prev = taus[i], (taus[i + 1] if i + 1 < len(taus) else 0)
        x0_hat = predict_x0(x, t, call_model(model, x, t), schedule)           # DDIM eq. (9): the data prediction
        second = order == 2 and x0_hat_last is not None and t_prev > 0           # first step and step to 0: first order
        x = dpm_solver_step(x, t, t_prev, x0_hat, schedule, *((x0_hat_last, t_last) if second else (None, None)))
        x0_hat_last, t_last = x0_hat, t
        if callback is not None:
            callback(t_prev, x)
    return x
