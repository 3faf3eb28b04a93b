"""Tests of dynamic thresholding (diffusion_lib/samplers/thresholding.py; Imagen, Saharia et al. 2022, sec. 2.3;
notebooks/09, sec. 5.3).

What they check: threshold_x0 equals an independent NumPy computation (Omega = max(1, np.percentile(|x0|, p)) per
sample, then clip to [-Omega, Omega] and divide by Omega) and leaves an x0_hat already inside [-1, 1] exactly as it is;
thresholded(eps_model, schedule, p) returns an eps' whose predicted x_0 (DDIM eq. 9) is the thresholded one
and whose value is eps itself where nothing needed thresholding; a model whose x0_hat overshoots drives DDIM
far outside [-1, 1] but stays inside it once thresholded, with DDIM, DDPM and DPM-Solver++ of order 1 and 2
(each one's last step lands on x0_thr); it composes with guided() and sample_images; `sample --threshold P`
on the command line is the library's thresholded(guided(...)); bad percentiles and schedules give clear
errors.

All checks are deterministic (seeded, float64 where exact, one CPU thread): designed false-failure rate 0.
"""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lib import (UNet, ddim_sample, ddpm_sample, dpm_solver_sample, guided,
                           linear_schedule, predict_x0, thresholded)
from diffusion_lib.cli import main
from diffusion_lib.model.unet import TINY
from diffusion_lib.samplers.batch import sample_images
from diffusion_lib.samplers.thresholding import PERCENTILE, threshold_x0
from diffusion_lib.training.checkpoint import load_model

F64 = torch.float64
SCHEDULE = linear_schedule()
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "digits_cond.pt"


def numpy_threshold(x0: np.ndarray, p: float) -> np.ndarray:
    """The oracle: Imagen's rule written out sample by sample with NumPy."""
    out = np.empty_like(x0)
    for i, x in enumerate(x0):
        s = max(1.0, float(np.percentile(np.abs(x), p)))
        out[i] = np.clip(x, -s, s) / s
    return out


@pytest.mark.parametrize("p", [PERCENTILE, 90.0, 100.0])
def test_threshold_x0_is_imagens_rule(p):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 1, 8, 8, generator=g, dtype=F64) * torch.tensor([0.2, 0.5, 1.0, 2.0, 4.0, 8.0],
                                                                       dtype=F64).reshape(-1, 1, 1, 1)
    got = threshold_x0(x0, p)
    assert np.allclose(got.numpy(), numpy_threshold(x0.numpy(), p), rtol=0, atol=1e-12)
    assert float(got.abs().max()) <= 1 + 1e-12
    assert torch.equal(got[0], x0[0])              # |x0| < 1 everywhere (sd 0.2, 64 pixels): s = 1, untouched
    assert float((got[5] - x0[5]).abs().max()) > 1  # sd 8: rescaled


def test_thresholded_eps_predicts_the_thresholded_x0():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 1, 8, 8, generator=g, dtype=F64)
    big = 3.0 * torch.randn(5, 1, 8, 8, generator=g, dtype=F64)
    for t in (1, 10, 300, 999, 1000, torch.tensor([1, 50, 500, 900, 1000])):
        eps_thr = thresholded(lambda x_t, t_: big, SCHEDULE)(x, t)
        expected = numpy_threshold(predict_x0(x, t, big, SCHEDULE).numpy(), PERCENTILE)   # the NumPy oracle
        assert np.allclose(predict_x0(x, t, eps_thr, SCHEDULE).numpy(), expected, rtol=0, atol=1e-9), t
    # where x0_hat is inside [-1, 1] already, eps' is eps (to rounding)
    x0_in = 0.5 * torch.rand(5, 1, 8, 8, generator=g, dtype=F64)
    ab = float(SCHEDULE.alpha_bars[400])
    eps = torch.randn(5, 1, 8, 8, generator=g, dtype=F64)
    x_t = ab ** 0.5 * x0_in + (1 - ab) ** 0.5 * eps
    assert torch.allclose(thresholded(lambda x_, t_: eps, SCHEDULE)(x_t, 400), eps, rtol=0, atol=1e-12)


def overshooting(x_t, t):
    """An eps-model whose x0_hat is 3 x_t / sqrt(alpha_bar_t)-ish: far outside [-1, 1] at every step."""
    return -2.0 * x_t


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm1", "dpm2"])
def test_a_saturating_model_stays_in_range_once_thresholded(sampler):
    # Every sampler's last step goes to t = 0, where alpha_bar_0 = 1, and returns its x0 prediction
    # (DDIM eq. 12; DDPM's mu_tilde at t = 1 with no noise; DPM-Solver++'s first-order last step), which
    # thresholding put inside [-1, 1].
    x_T = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    run = {"ddim": lambda m: ddim_sample(m, None, SCHEDULE, steps=20, x_T=x_T),
           "ddpm": lambda m: ddpm_sample(m, None, SCHEDULE, x_T=x_T, generator=torch.Generator().manual_seed(3)),
           "dpm1": lambda m: dpm_solver_sample(m, None, SCHEDULE, steps=10, order=1, x_T=x_T),
           "dpm2": lambda m: dpm_solver_sample(m, None, SCHEDULE, steps=10, order=2, x_T=x_T)}[sampler]
    assert float(run(overshooting).abs().max()) > 2          # the test can fail: without thresholding it saturates
    assert float(run(thresholded(overshooting, SCHEDULE)).abs().max()) <= 1 + 1e-9


def conditional_unet(seed=0):
    torch.manual_seed(seed)
    model = UNet(replace(TINY, num_classes=10)).eval()
    with torch.no_grad():                          # zero-initialised output layers: give every layer a value
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_it_composes_with_guided_and_sample_images():
    model, labels = conditional_unet(), torch.arange(10)
    g = torch.Generator().manual_seed(4)
    expected = ddim_sample(thresholded(guided(model, labels, 2.0), SCHEDULE), (10, 1, 8, 8), SCHEDULE, steps=4,
                           generator=g).clamp(-1, 1)
    got = sample_images(model, SCHEDULE, (1, 8, 8), 10, "ddim", steps=4, seed=4, progress=False, fast=False,
                        labels=labels, guidance=2.0, threshold=PERCENTILE)
    assert torch.equal(got, expected)
    plain = sample_images(model, SCHEDULE, (1, 8, 8), 10, "ddim", steps=4, seed=4, progress=False, fast=False,
                          labels=labels, guidance=2.0)
    assert not torch.equal(plain, got)


def test_bad_arguments_give_clear_errors():
    for p in (0, -1, 100.5, float("nan"), True, "99.5"):
        with pytest.raises(ValueError, match=r"percentile must be a number in \(0, 100\]"):
            thresholded(overshooting, SCHEDULE, p)
    with pytest.raises(TypeError, match="schedule must be a Schedule"):
        thresholded(overshooting, SCHEDULE.betas)
    with pytest.raises(TypeError, match="callable"):
        thresholded("model", SCHEDULE)


def test_the_command_line_threshold_is_the_library(tmp_path, capsys):
    out = tmp_path / "x.npy"
    assert main(["sample", "--checkpoint", str(SHIPPED), "--label", "all", "--guidance", "2", "--threshold", "99.5",
                 "--steps", "3", "-n", "10", "--seed", "0", "--out", str(out), "--no-progress", "--no-fast",
                 "--device", "cpu"]) == 0
    assert "dynamic thresholding at p = 99.5" in capsys.readouterr().out
    model, schedule, _ = load_model(SHIPPED, device="cpu")
    g = torch.Generator().manual_seed(0)
    expected = ddim_sample(thresholded(guided(model, torch.arange(10), 2.0), schedule), (10, 1, 8, 8), schedule,
                           steps=3, generator=g).clamp(-1, 1).numpy()
    assert np.array_equal(np.load(out), expected)
    for bad in ("0", "101", "nan", "high"):
        assert main(["sample", "--checkpoint", str(SHIPPED), "--label", "3", "--threshold", bad, "--out", str(out),
                     "-n", "2", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--threshold" in err, err
