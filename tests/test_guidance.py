"""Tests of classifier-free guidance (diffusion_lib/samplers/guidance.py) and the class-conditional U-Net.

What they check: on labelled Gaussian mixtures, where q_t(x | c) and q_t(c | x) are known in closed
form, guided(oracle, c, w) equals -sqrt(1 - alpha_bar_t) [grad log q_t(x | c) + w grad log q_t(c | x)]
(Ho & Salimans 2022, eq. 6 and the Bayes identity behind it; notebooks/09, secs. 1-2) to float64
rounding, the gradients taken by autograd of the log-densities, so the identity is checked against an
independent computation; guided with w = 0 is the conditional call itself; the one doubled-batch call
equals two separate calls and is ONE network call; every sampler (DDPM, DDIM, inversion, DPM-Solver++)
takes guided() unchanged, and with w = 0 and the exact oracle DDPM draws the class's own law p(x | c)
(a KS test); labels and w are checked with clear errors; the UNet takes labels exactly when it is
conditional, a FastModel passes them on, and configs without num_classes (older checkpoints) load.

False-failure rate: one statistical check (the KS test at p < 1e-4, seeded): 1e-4 for the module;
everything else is deterministic (seeded, exact identities, one CPU thread): 0.
"""
import math
from dataclasses import replace

import pytest
import torch
from scipy import stats

from diffusion_lib import (GaussianMixture, UNet, UNetConfig, ddim_invert, ddim_sample, ddpm_sample,
                           dpm_solver_sample, guided, linear_schedule)
from diffusion_lib.model.fast import fast_model
from diffusion_lib.model.unet import TINY
from diffusion_lib.samplers.guidance import num_classes_of, unconditional

F64 = torch.float64
SCHEDULE = linear_schedule()
# class 0: two components, class 1: one (1-D); and a 2-D mixture with three classes
MIX_1D = (GaussianMixture([0.3, 0.3, 0.4], [[-2.0], [0.5], [2.5]], [[0.5], [0.3], [0.6]]), [0, 0, 1])
MIX_2D = (GaussianMixture([0.2, 0.3, 0.1, 0.4], [[-1.0, 1.0], [1.5, 0.0], [0.0, -2.0], [1.0, 2.0]],
                          [[0.4, 0.7], [0.5, 0.3], [0.8, 0.8], [0.3, 0.5]]), [0, 1, 2, 1])


def conditional_unet(seed=0, **kw):
    torch.manual_seed(seed)
    model = UNet(replace(TINY, num_classes=10, **kw)).eval()
    with torch.no_grad():                         # zero-initialised output layers: give every layer a value
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def grad_log(fn, x):
    """grad_x sum(fn(x)) for x (B, D) float64: the score of a log-density, by autograd."""
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(fn(x).sum(), x)[0]


@pytest.mark.parametrize("mixture,classes", [MIX_1D, MIX_2D], ids=["1-D", "2-D"])
def test_guided_eps_is_the_score_of_bayes_rule(mixture, classes):
    # eps_tilde = -sqrt(1 - alpha_bar_t) [grad log q_t(x|c) + w grad log q_t(c|x)],
    # log q_t(c|x) = log p(c) + log q_t(x|c) - log q_t(x)     (notebooks/09, eqs. 1.1-1.6)
    oracle = mixture.class_eps_model(SCHEDULE, classes)
    g = torch.Generator().manual_seed(0)
    x = 2.5 * torch.randn(64, mixture.dim, generator=g, dtype=F64)
    for c in range(oracle.num_classes):
        p_c = mixture.weights[torch.tensor(classes) == c].sum()
        for t in (1, 10, 100, 400, 800, 1000):
            q_c, q = mixture.given(torch.tensor(classes) == c).marginal(t, SCHEDULE), mixture.marginal(t, SCHEDULE)
            score_c = grad_log(q_c.log_prob, x)
            score_class = grad_log(lambda z: p_c.log() + q_c.log_prob(z) - q.log_prob(z), x)
            for w in (0.0, 0.5, 2.0, 8.0):
                expected = -(1 - SCHEDULE.alpha_bars[t]).sqrt() * (score_c + w * score_class)
                got = guided(oracle, c, w)(x, torch.full((64,), t))
                scale = 1 + expected.abs().max()
                assert (got - expected).abs().max() <= 1e-10 * scale, (c, t, w)


def test_w_zero_is_the_conditional_call_and_one_network_call():
    model = conditional_unet()
    x, t, y = torch.randn(6, 1, 8, 8), torch.tensor([1, 5, 100, 500, 999, 1000]), torch.tensor([0, 3, 9, 2, 2, 7])
    with torch.no_grad():
        assert torch.equal(guided(model, y, 0.0)(x, t), model(x, t, y))
        assert torch.equal(guided(model, 4, 0)(x, t), model(x, t, torch.full((6,), 4)))
    calls = []
    counting = lambda x, t, y: calls.append(len(x)) or model(x, t, y)          # noqa: E731
    counting.num_classes = 10
    with torch.no_grad():
        guided(counting, y, 0.0)(x, t)
        guided(counting, y, 2.0)(x, t)
    assert calls == [6, 12]                       # w = 0: the conditional half only; w > 0: one doubled batch


def test_one_doubled_batch_equals_two_separate_calls():
    model, null = conditional_unet(), 10
    x, t, y = torch.randn(8, 1, 8, 8), torch.randint(1, 1001, (8,)), torch.arange(8)
    with torch.no_grad():
        for w in (0.5, 2.0, 8.0):
            separate = (1 + w) * model(x, t, y) - w * model(x, t, torch.full((8,), null))
            # float32: the batched network call may round differently from two calls (~1e-6 of eps)
            assert torch.allclose(guided(model, y, w)(x, t), separate, rtol=0, atol=1e-5 * (1 + 2 * w))
    oracle = MIX_2D[0].class_eps_model(SCHEDULE, MIX_2D[1])            # per-sample arithmetic: exactly equal
    x2, y2 = torch.randn(5, 2, dtype=F64), torch.tensor([0, 1, 2, 1, 0])
    t2 = torch.full((5,), 300)
    separate = 3 * oracle(x2, t2, y2) - 2 * oracle(x2, t2, torch.full((5,), 3))
    assert torch.allclose(guided(oracle, y2, 2.0)(x2, t2), separate, rtol=1e-14, atol=1e-14)


def test_every_sampler_takes_guided_unchanged():
    mixture, classes = MIX_1D
    oracle = mixture.class_eps_model(SCHEDULE, classes)
    fixed = lambda x, t: oracle(x, t, torch.ones(len(x), dtype=torch.long))   # noqa: E731  class 1, w = 0
    x_T = torch.randn(50, 1, generator=torch.Generator().manual_seed(1), dtype=F64)
    for sampler in (lambda m: ddim_sample(m, None, SCHEDULE, steps=20, x_T=x_T),
                    lambda m: dpm_solver_sample(m, None, SCHEDULE, steps=10, x_T=x_T),
                    lambda m: ddim_invert(m, x_T, SCHEDULE, steps=20),
                    lambda m: ddpm_sample(m, None, SCHEDULE, x_T=x_T, generator=torch.Generator().manual_seed(2))):
        assert torch.equal(sampler(guided(oracle, 1, 0.0)), sampler(fixed))
        out = sampler(guided(oracle, 1, 3.0))
        assert out.shape == x_T.shape and bool(torch.isfinite(out).all())
    model = conditional_unet()
    for sampler in (ddim_sample, dpm_solver_sample):
        assert sampler(guided(model, torch.arange(4), 2.0), (4, 1, 8, 8), SCHEDULE, steps=3).shape == (4, 1, 8, 8)


def test_w_zero_with_the_exact_oracle_samples_the_class_law():
    # DDPM (all T steps) with the exact E[eps | x_t, c] draws from p(x | c): KS test against its CDF,
    # fails below p = 1e-4. Class 0 of MIX_1D is a two-component mixture.
    mixture, classes = MIX_1D
    law = mixture.given(torch.tensor(classes) == 0)
    x = ddpm_sample(guided(mixture.class_eps_model(SCHEDULE, classes), 0, 0.0), (4000, 1), SCHEDULE,
                    generator=torch.Generator().manual_seed(3)).double()

    def cdf(v):
        z = (torch.as_tensor(v)[:, None] - law.means[:, 0]) / law.stds[:, 0]
        return (law.weights * 0.5 * (1 + torch.erf(z / math.sqrt(2)))).sum(1).numpy()
    assert stats.kstest(x[:, 0].numpy(), cdf).pvalue > 1e-4


def test_bad_labels_and_weights_give_clear_errors():
    model = conditional_unet()
    for y, w, message in [(10, 1.0, "0..9"), (-1, 1.0, "0..9"), (torch.tensor([0, 10]), 1.0, "null label"),
                          (3, -0.5, "w must be a finite number >= 0"), (3, math.nan, "finite"), (3, math.inf, "finite"),
                          (3, True, "finite")]:
        with pytest.raises(ValueError, match=message):
            guided(model, y, w)
    for y in (3.0, torch.tensor([1.0, 2.0]), torch.zeros(2, 2, dtype=torch.long), "7"):
        with pytest.raises(TypeError, match="int or a LongTensor"):
            guided(model, y, 1.0)
    with pytest.raises(ValueError, match="class-conditional model"):
        guided(UNet(TINY), 3, 1.0)
    with pytest.raises(ValueError, match="class-conditional model"):
        guided(lambda x, t: x, 3, 1.0)
    with pytest.raises(ValueError, match="unconditional already"):
        unconditional(UNet(TINY))
    with pytest.raises(ValueError, match="3 labels but the sampler's batch has 4"):
        guided(model, torch.tensor([1, 2, 3]), 1.0)(torch.randn(4, 1, 8, 8), torch.full((4,), 10))


def test_the_unet_takes_labels_exactly_when_it_is_conditional():
    model, plain = conditional_unet(), UNet(TINY)
    x, t = torch.randn(3, 1, 8, 8), torch.full((3,), 50)
    with pytest.raises(TypeError, match=r"model\(x_t, t, y\)"):
        model(x, t)
    with pytest.raises(TypeError, match="unconditional"):
        plain(x, t, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="0..9"):
        model(x, t, torch.tensor([0, 11, 2]))
    with pytest.raises(ValueError, match="shape"):
        model(x, t, torch.tensor([0, 1]))
    with torch.no_grad():
        assert unconditional(model)(x, t).equal(model(x, t, torch.full((3,), 10)))
        assert not model(x, t, torch.zeros(3, dtype=torch.long)).equal(model(x, t, torch.ones(3, dtype=torch.long)))
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters()) == 11 * 64


def test_fast_model_passes_labels_and_the_class_count():
    model = conditional_unet()
    fast = fast_model(model, bf16=False)
    assert num_classes_of(fast) == 10 and num_classes_of(model) == 10 and num_classes_of(UNet(TINY)) == 0
    x, t = torch.randn(4, 1, 8, 8), torch.full((4,), 700)
    with torch.no_grad():
        assert torch.equal(guided(fast, 2, 1.5)(x, t), guided(model, 2, 1.5)(x, t))


def test_configs_without_num_classes_still_load():
    old = {k: v for k, v in TINY.to_dict().items() if k != "num_classes"}          # an older checkpoint's dict
    assert UNetConfig.from_dict(old) == TINY and TINY.num_classes == 0
    assert UNetConfig.from_dict(replace(TINY, num_classes=10).to_dict()).num_classes == 10
    with pytest.raises(ValueError, match="keys"):
        UNetConfig.from_dict({**old, "colour": True})
    with pytest.raises(ValueError, match="num_classes"):
        UNetConfig(num_classes=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs)")
def test_cuda_graphs_pass_the_labels():
    # FastModel captures one CUDA graph per batch shape, labels included: the replayed graph must use the
    # labels of each call (float32, so the same numbers as the plain model up to float32 rounding).
    model = conditional_unet().cuda()
    fast = fast_model(model, bf16=False, cuda_graph=True)
    x, t = torch.randn(4, 1, 8, 8, device="cuda"), torch.full((4,), 600, device="cuda")
    with torch.no_grad():
        for y in (1, 7):                          # the second call replays the graph captured with the first labels
            assert torch.allclose(guided(fast, y, 2.0)(x, t), guided(model, y, 2.0)(x, t), atol=1e-5, rtol=0)


def test_guidance_in_an_interval_guides_there_and_nowhere_else():
    # guided(..., interval=(lo, hi)): eq. (6) for lo <= t <= hi, the conditional eps (w = 0) elsewhere;
    # per image, so a batch with mixed t gets each image's own rule (Kynkaanniemi et al. 2024).
    model = conditional_unet()
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3, 4, 5])
    t = torch.tensor([1, 100, 300, 301, 700, 1000])
    inside = (t >= 100) & (t <= 300)
    full, plain = guided(model, y, 2.0)(x, t), guided(model, y, 0.0)(x, t)
    limited = guided(model, y, 2.0, interval=(100, 300))(x, t)
    assert torch.allclose(limited[inside], full[inside], atol=1e-6)
    assert torch.allclose(limited[~inside], plain[~inside], atol=1e-6)
    assert not torch.allclose(full[~inside], plain[~inside], atol=1e-3)          # guidance does change eps there
    assert torch.allclose(guided(model, y, 2.0, interval=(1, 1000))(x, t), full, atol=1e-6)


@pytest.mark.parametrize("interval", [(0, 10), (20, 10), (1.5, 10), ("a", 3), (5,)])
def test_a_bad_interval_is_refused(interval):
    with pytest.raises(ValueError, match="interval must be two time steps"):
        guided(conditional_unet(), 3, 2.0, interval=interval)
