"""Noise schedules on the paper's time index: convention, linear and cosine formulas, SNR, gather.

Derivations: notebooks/01_forward_process.ipynb, sec. 3 (linear and cosine schedules, SNR) and
sec. 2 (alpha_bar as a product); the posterior variance beta_tilde is DDPM eq. (7).

Every check here is an exact identity or inequality, evaluated in float64 and compared with a
rounding tolerance (1e-12 relative unless stated). There is no randomness, so the designed
false-failure rate is 0, per test and for the module. Bad inputs to the schedules and to gather: rows of
tests/test_bad_inputs.py.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from diffusion_lib import Schedule, cosine_schedule, gather, linear_schedule

T = 1000


def _custom_schedule():
    """A non-monotone hand-made schedule: the convention must not depend on how betas were made."""
    betas = torch.tensor([0.0, 0.3, 0.01, 0.2, 0.05, 0.5], dtype=torch.float64)
    return Schedule(betas)


SCHEDULES = {
    "linear": linear_schedule,
    "cosine": cosine_schedule,
    "linear_T10": lambda: linear_schedule(T=10, beta_start=1e-3, beta_end=0.3),
    "cosine_T10": lambda: cosine_schedule(T=10),
    "custom": _custom_schedule,
}


@pytest.fixture(params=sorted(SCHEDULES), scope="module")
def schedule(request):
    return SCHEDULES[request.param]()


def _cosine_f(t, T, s):
    """f(t) = cos^2(((t/T + s) / (1 + s)) pi/2); Nichol & Dhariwal 2021, eq. (17). Python floats."""
    return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


# ---------------------------------------------------------------------------------------------
# The convention: arrays of length T+1, index 0 the clean state
# ---------------------------------------------------------------------------------------------

def test_convention_index_zero_is_clean_state(schedule):
    n = schedule.T + 1
    for name in ("betas", "alphas", "alpha_bars", "beta_tildes"):
        arr = getattr(schedule, name)
        assert arr.shape == (n,), f"{name} has shape {tuple(arr.shape)}, expected ({n},)"
        assert arr.dtype == torch.float64, f"{name} is {arr.dtype}, schedules are float64"
    assert schedule.betas[0] == 0
    assert schedule.alphas[0] == 1
    assert schedule.alpha_bars[0] == 1
    assert schedule.beta_tildes[0] == 0
    assert schedule.beta_tildes[1] == 0          # q(x_0 | x_1, x_0) is a point mass
    torch.testing.assert_close(schedule.alphas, 1 - schedule.betas, rtol=0, atol=0)


def test_alpha_bar_recursion(schedule):
    """alpha_bars[t] = alpha_bars[t-1] (1 - betas[t]) and = prod_{s=1..t} (1 - beta_s)."""
    betas = schedule.betas.tolist()
    ab = schedule.alpha_bars.tolist()
    running = 1.0
    for t in range(1, schedule.T + 1):
        assert ab[t] == pytest.approx(ab[t - 1] * (1 - betas[t]), rel=1e-12, abs=0), f"t={t}"
        running *= 1 - betas[t]                   # prod_{s=1..t} (1 - beta_s), DDPM eq. (4)
        assert ab[t] == pytest.approx(running, rel=1e-12, abs=0), f"t={t}"


def test_alpha_bars_strictly_decrease(schedule):
    ab = schedule.alpha_bars
    assert bool((ab[1:] < ab[:-1]).all())
    assert bool((ab[1:] > 0).all())


def test_frozen():
    s = linear_schedule(T=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.betas = torch.zeros(6, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Linear schedule (DDPM sec. 4)
# ---------------------------------------------------------------------------------------------

def test_linear_defaults_are_ddpm():
    s = linear_schedule()
    assert s.T == T
    assert float(s.betas[1]) == pytest.approx(1e-4, rel=1e-12)
    assert float(s.betas[T]) == pytest.approx(0.02, rel=1e-12)


@pytest.mark.parametrize("T_, b1, bT", [(1000, 1e-4, 0.02), (10, 1e-3, 0.3), (2, 0.1, 0.2),
                                        (50, 0.01, 0.01)])
def test_linear_formula(T_, b1, bT):
    """beta_t = beta_1 + (t-1)/(T-1) (beta_T - beta_1), t = 1..T."""
    s = linear_schedule(T=T_, beta_start=b1, beta_end=bT)
    assert s.T == T_
    expected = [0.0] + [b1 + (t - 1) / (T_ - 1) * (bT - b1) for t in range(1, T_ + 1)]
    np.testing.assert_allclose(s.betas.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_linear_alpha_bar_T_bounds():
    """log alpha_bar_T = sum log(1 - beta) lies between -sum b - sum b^2/(2(1-b)) and -sum b - sum b^2/2.

    From -b - b^2/(2(1-b)) <= log(1-b) <= -b - b^2/2 for 0 < b < 1 (notebooks/01, sec. 3).
    For DDPM's schedule this puts alpha_bar_T near exp(-10.05 - 0.067) ~ 4.0e-5.
    """
    s = linear_schedule()
    b = s.betas[1:].numpy()
    log_ab = math.log(float(s.alpha_bars[T]))
    upper = -b.sum() - (b ** 2).sum() / 2
    lower = -b.sum() - (b ** 2 / (2 * (1 - b))).sum()
    assert lower <= log_ab <= upper
    assert b.sum() == pytest.approx(T * (1e-4 + 0.02) / 2, rel=1e-12)   # arithmetic series


# ---------------------------------------------------------------------------------------------
# Cosine schedule (Nichol & Dhariwal 2021, eq. 17)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T_, s_", [(1000, 0.008), (10, 0.008), (200, 0.0), (100, 0.3)])
def test_cosine_formula_before_clipping(T_, s_):
    """Where no beta was clipped, alpha_bar_t = f(t)/f(0) and beta_t = 1 - f(t)/f(t-1)."""
    sched = cosine_schedule(T=T_, s=s_)
    f0 = _cosine_f(0, T_, s_)
    ab = sched.alpha_bars.tolist()
    betas = sched.betas.tolist()
    unclipped = 0
    for t in range(1, T_ + 1):
        beta_formula = 1 - _cosine_f(t, T_, s_) / _cosine_f(t - 1, T_, s_)
        if beta_formula >= 0.999:
            break
        assert betas[t] == pytest.approx(beta_formula, rel=1e-9), f"t={t}"
        assert ab[t] == pytest.approx(_cosine_f(t, T_, s_) / f0, rel=1e-9), f"t={t}"
        unclipped += 1
    # f(T) = cos^2(pi/2) = 0, so beta_T from the formula is 1: only the last step is clipped here
    assert unclipped == T_ - 1


@pytest.mark.parametrize("T_, max_beta", [(1000, 0.999), (10, 0.999), (1000, 0.05), (50, 0.3)])
def test_cosine_clipping(T_, max_beta):
    """beta_t = min(1 - f(t)/f(t-1), max_beta); alpha_bars are the products of the clipped betas."""
    sched = cosine_schedule(T=T_, max_beta=max_beta)
    betas = sched.betas.tolist()
    ab = sched.alpha_bars.tolist()
    n_clipped = 0
    for t in range(1, T_ + 1):
        raw = 1 - _cosine_f(t, T_, 0.008) / _cosine_f(t - 1, T_, 0.008)
        assert betas[t] == pytest.approx(min(raw, max_beta), rel=1e-9), f"t={t}"
        n_clipped += raw > max_beta
        assert ab[t] == pytest.approx(ab[t - 1] * (1 - betas[t]), rel=1e-12)
    assert max(betas) <= max_beta
    assert betas[T_] == pytest.approx(max_beta, rel=1e-12)     # f(T) = 0 always clips the last
    assert n_clipped >= 1
    if max_beta == 0.999:
        # the last step keeps 0.1 % of alpha_bar_{T-1}
        assert ab[T_] == pytest.approx(ab[T_ - 1] * 0.001, rel=1e-9)


def test_cosine_alpha_bar_T_is_much_smaller_than_linear():
    lin, cos = linear_schedule(), cosine_schedule()
    assert 3e-5 < float(lin.alpha_bars[T]) < 5e-5
    assert float(cos.alpha_bars[T]) < 1e-8
    assert float(cos.alpha_bars[T]) < float(lin.alpha_bars[T])


# ---------------------------------------------------------------------------------------------
# SNR (Kingma et al. 2021, eq. 2) and the posterior variance beta_tilde (DDPM eq. 7)
# ---------------------------------------------------------------------------------------------

def test_snr_definition_and_monotone(schedule):
    snr = schedule.snr
    ab = schedule.alpha_bars
    assert snr.shape == (schedule.T + 1,)
    assert math.isinf(float(snr[0])) and float(snr[0]) > 0
    torch.testing.assert_close(snr[1:], ab[1:] / (1 - ab[1:]), rtol=1e-12, atol=0)
    assert bool(torch.isfinite(snr[1:]).all()) and bool((snr[1:] > 0).all())
    assert bool((snr[1:] < snr[:-1]).all()), "SNR must decrease strictly with t"


def test_beta_tilde_formula(schedule):
    """beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, and 0 <= beta_tilde_t < beta_t."""
    b = schedule.betas.tolist()
    ab = schedule.alpha_bars.tolist()
    bt = schedule.beta_tildes.tolist()
    for t in range(2, schedule.T + 1):
        assert bt[t] == pytest.approx((1 - ab[t - 1]) / (1 - ab[t]) * b[t], rel=1e-12), f"t={t}"
        assert 0 < bt[t] < b[t]


# ---------------------------------------------------------------------------------------------
# gather: the one helper for "schedule value at t, broadcast against x"
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4,), (4, 3), (4, 1, 8, 8), (4, 3, 2, 5, 2)])
def test_gather_shape_and_values(shape):
    s = linear_schedule()
    like = torch.zeros(shape, dtype=torch.float32)
    t = torch.tensor([0, 1, 500, 1000])
    out = gather(s.alpha_bars, t, like)
    assert out.shape == (4,) + (1,) * (len(shape) - 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.reshape(4), s.alpha_bars[t].float(), rtol=0, atol=0)
    out64 = gather(s.alpha_bars, t, like, dtype=torch.float64)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.reshape(4), s.alpha_bars[t], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gather_int_and_tensor_t_agree(dtype):
    s = cosine_schedule()
    like = torch.zeros(3, 2, 2, dtype=dtype)
    for t in (0, 1, 17, 999, 1000):
        a = gather(s.betas, t, like)                           # Python int
        b = gather(s.betas, torch.full((3,), t), like)         # LongTensor (B,)
        c = gather(s.betas, torch.tensor(t), like)             # 0-d tensor
        d = gather(s.betas, np.int64(t), like)                 # numpy integer
        for other in (b, c, d):
            assert other.shape == a.shape == (3, 1, 1)
            torch.testing.assert_close(other, a, rtol=0, atol=0)
