"""Tests of the sampling speed-ups (diffusion_lib/model/fast.py): same samples as the plain model.

What they check: ddpm_sample and ddim_sample (eta = 0 and eta = 0.5) called with the float32
fast path, fast_model(model, bf16=False), give exactly the samples of the plain model on the CPU,
from the same x_T and generator; channels_last gives the same samples up to float32 rounding; bf16
changes eps_hat only by bf16 rounding; the defaults are bf16 exactly where the CPU has bf16
instructions (and on CUDA); a CUDA graph replays the forward pass exactly (on a CUDA machine;
skipped elsewhere); bad options raise clear errors.

Every test is deterministic (seeded weights, inputs and generators, one CPU thread); tolerances
are stated at each assert and cover rounding only. Designed false-failure rate: 0 per test and
for the module.
"""
import pytest
import torch

from diffusion_lib import ddim_sample, ddpm_sample, linear_schedule
from diffusion_lib.model.fast import FastModel, cpu_has_native_bf16, default_options, fast_model
from diffusion_lib.model.unet import UNet

from conftest import MICRO, randomized

SCHEDULE = linear_schedule(20)


def samples(model, sampler, device="cpu", **kw):
    g = torch.Generator(device).manual_seed(5)
    if sampler == "ddpm":
        return ddpm_sample(model, (6, 1, 8, 8), SCHEDULE, generator=g, device=device)
    return ddim_sample(model, (6, 1, 8, 8), SCHEDULE, steps=10, generator=g, device=device, **kw)


@pytest.mark.parametrize("sampler, kw", [("ddpm", {}), ("ddim", {"eta": 0.0}), ("ddim", {"eta": 0.5})])
def test_float32_fast_path_gives_exactly_the_plain_samples(sampler, kw):
    model = randomized(UNet(MICRO))
    fast = fast_model(model, bf16=False)
    assert fast.bf16 is fast.channels_last is fast.cuda_graph is False
    plain = samples(model, sampler, **kw)
    assert plain.abs().max() > 0.1                              # a real computation, not zeros
    assert torch.equal(samples(fast, sampler, **kw), plain)


def test_channels_last_gives_the_same_samples_up_to_rounding():
    # NHWC convolutions sum in another order: float32 rounding (~1e-7 relative per operation),
    # carried through 10 DDIM steps; 1e-4 relative to the samples' scale leaves a wide margin.
    model = randomized(UNet(MICRO))
    plain = samples(model, "ddim")
    fast = samples(FastModel(model, channels_last=True), "ddim")
    assert (fast - plain).abs().max() <= 1e-4 * plain.abs().max()
    assert next(model.parameters()).is_contiguous()             # the caller's model is left alone


def test_bf16_changes_eps_hat_by_rounding_only():
    # bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.4 %); through a few normalised layers the
    # RMS relative error of eps_hat stays at a few times that: 5 % bounds it generously, while a wrong
    # computation (eps_hat of other images) is off by tens of percent.
    model = randomized(UNet(MICRO))
    x, t = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(1, 17) * 50
    with torch.no_grad():
        plain = model(x, t)
    fast = FastModel(model, bf16=True)(x, t)
    assert fast.dtype == torch.float32
    assert ((fast - plain).norm() / plain.norm()) < 0.05
    with torch.no_grad():
        other = model(x.flip(0), t)                            # the same t, other images
    assert ((other - plain).norm() / plain.norm()) > 0.2       # the check can tell a wrong answer


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replays_the_forward_pass():
    # Same kernels, replayed: equal up to cuDNN's choice of algorithm (float32 rounding, 1e-5 relative).
    model = randomized(UNet(MICRO)).to("cuda")
    plain = samples(model, "ddim", device="cuda")
    graphed = FastModel(model, cuda_graph=True)
    for _ in range(2):                                           # captured once, replayed after
        out = samples(graphed, "ddim", device="cuda")
        assert (out - plain).abs().max() <= 1e-5 * plain.abs().max()
    assert len(graphed.graphs) == 1


def test_options_and_errors():
    assert default_options("cpu") == {"bf16": cpu_has_native_bf16(), "channels_last": False, "compile": False,
                                      "cuda_graph": False}
    assert default_options("cuda") == {"bf16": True, "channels_last": False, "compile": False, "cuda_graph": True}
    model = randomized(UNet(MICRO))
    with pytest.raises(ValueError, match="CUDA"):
        FastModel(model, cuda_graph=True)
    with pytest.raises(ValueError, match="unknown fast_model options"):
        fast_model(model, fp8=True)
    with pytest.raises(TypeError, match="nn.Module"):
        FastModel(lambda x, t: x)
    assert "float32 eager" in repr(FastModel(model)) and "bf16" in repr(FastModel(model, bf16=True))
