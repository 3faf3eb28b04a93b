"""Tests of the U-Net eps_theta(x_t, t) (diffusion_lib/model/unet.py).

What they check: output shapes for the 8x8, 28x28 and 32x32 configurations; the sinusoidal time
embedding against a direct float64 evaluation of its formula, and that distinct t give distinct
embeddings; that the time step really reaches the output; that no information flows between the
images of a batch; the attention layer against a direct einsum; the size of the `cpu` preset's
model against the 5 MB cap of the shipped checkpoint; the input checks.

There is no Monte Carlo here: every test is deterministic (seeded weights and inputs), and the
tolerances cover float32 rounding only (stated at each assert), so the designed false-failure
rate is 0 per test and for the module.
"""
import io
import math

import pytest
import torch

from diffusion_lib.training.config import PRESETS
from diffusion_lib.model.unet import (DIGITS, MNIST28, MNIST32, TINY, SelfAttention, UNet, UNetConfig,
                                model_summary, timestep_embedding, unet_config_for)

from conftest import randomized

SMALL28 = UNetConfig(image_size=28, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1,
                     time_embed_dim=32, groups=4)


@pytest.mark.parametrize("config", [TINY, DIGITS, MNIST28, MNIST32], ids=["tiny", "digits", "mnist28", "mnist32"])
def test_output_shape_equals_input_shape(config):
    torch.manual_seed(0)
    model = UNet(config)
    x = torch.randn(2, config.in_channels, config.image_size, config.image_size)
    with torch.no_grad():
        eps_hat = model(x, torch.tensor([1, 1000]))
    assert eps_hat.shape == x.shape and eps_hat.dtype == x.dtype


def test_unet_config_for_gives_the_named_instances():
    assert unet_config_for((1, 8, 8), "small") == DIGITS
    assert unet_config_for((1, 8, 8), "tiny") == TINY
    assert unet_config_for((1, 28, 28)) == MNIST28              # 28 -> 14 -> 7, no padding
    assert unet_config_for((1, 32, 32)) == MNIST32              # 32 -> 16 -> 8 -> 4
    assert unet_config_for((3, 8, 8)).in_channels == 3


def test_timestep_embedding_matches_the_formula():
    # emb[:, i] = cos(t w_i), emb[:, half + i] = sin(t w_i), w_i = 10000^(-i / half), evaluated
    # directly in float64. Tolerance 5e-4: the float32 argument t * w_i (t <= 1000) carries an
    # absolute rounding error up to ~1000 * 2 * 6e-8 ~ 1.2e-4, and |d cos| <= |d arg|.
    t = torch.tensor([1, 2, 17, 500, 999, 1000])
    for dim in (16, 32, 33):
        emb = timestep_embedding(t, dim).double()
        half = dim // 2
        expected = torch.zeros(len(t), dim, dtype=torch.float64)
        for b, tb in enumerate(t.tolist()):
            for i in range(half):
                w = 10000.0 ** (-i / half)
                expected[b, i] = math.cos(tb * w)
                expected[b, half + i] = math.sin(tb * w)
        assert emb.shape == (len(t), dim)
        assert torch.allclose(emb, expected, atol=5e-4, rtol=0)
        if dim % 2:
            assert torch.all(emb[:, -1] == 0)


def test_distinct_time_steps_give_distinct_embeddings():
    # Every pair t != t' in 1..1000 must differ clearly (not just by rounding): the smallest
    # pairwise distance must exceed 1e-2, far above float32 rounding (~1e-5 per entry).
    emb = timestep_embedding(torch.arange(1, 1001), 32).double()
    dist = torch.cdist(emb, emb)
    dist.fill_diagonal_(float("inf"))
    assert float(dist.min()) > 1e-2


def test_the_time_step_reaches_the_output():
    torch.manual_seed(0)
    model = randomized(UNet(TINY))
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        a = model(x, torch.tensor([10, 10, 10]))
        b = model(x, torch.tensor([900, 900, 900]))
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_images_in_a_batch_do_not_interact():
    # GroupNorm and attention act per image: image 0's output must not depend on the others.
    # Tolerance 1e-4 relative: float32 rounding of differently sized matrix products.
    torch.manual_seed(0)
    model = randomized(UNet(SMALL28))
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([5, 50, 500, 999])
    with torch.no_grad():
        full = model(x, t)
        single = model(x[1:2], t[1:2])
        shuffled = model(x[[1, 0, 3, 2]], t[[1, 0, 3, 2]])
    scale = full.abs().max()
    assert (full[1:2] - single).abs().max() <= 1e-4 * scale
    assert (full[[1, 0, 3, 2]] - shuffled).abs().max() <= 1e-4 * scale


def test_self_attention_matches_a_direct_computation():
    # softmax(q k^T / sqrt(C)) v over the H*W positions of each image, one head; tolerance 1e-5
    # relative (float32 rounding).
    torch.manual_seed(0)
    attn = randomized(SelfAttention(16, groups=4))
    x = torch.randn(2, 16, 3, 5)
    with torch.no_grad():
        h = attn.norm(x)
        qkv = (torch.einsum("oc,bcp->bop", attn.qkv.weight[:, :, 0, 0], h.reshape(2, 16, 15))
               + attn.qkv.bias[None, :, None])
        q, k, v = qkv[:, :16], qkv[:, 16:32], qkv[:, 32:]               # (B, C, P) each
        weights = torch.softmax(torch.einsum("bcp,bcs->bps", q, k) / math.sqrt(16), dim=-1)
        out = torch.einsum("bps,bcs->bcp", weights, v)
        out = torch.einsum("oc,bcp->bop", attn.proj.weight[:, :, 0, 0], out) + attn.proj.bias[None, :, None]
        expected = x + out.reshape(2, 16, 3, 5)
        got = attn(x)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_zero_initialised_output_predicts_no_noise_at_start():
    # The last conv starts at zero (improved-diffusion's zero_module): eps_hat = 0, so the first
    # L_simple is E||eps||^2 = 1 per element.
    model = UNet(TINY)
    with torch.no_grad():
        assert torch.all(model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])) == 0)


def test_cpu_preset_model_fits_the_size_cap():
    config = unet_config_for((1, 8, 8), PRESETS["cpu"].model_size)
    model = UNet(config)
    n, line = model_summary(model)
    assert 0 < n and f"{n / 1e6:.2f}M" in line
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)                   # the EMA weights of a shipped checkpoint
    assert buffer.tell() < 5_000_000, f"{buffer.tell()} bytes for {n} parameters"


def test_bad_inputs_raise_clear_errors():
    model = UNet(TINY)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8), t)                     # wrong channel count
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.randn(2, 1, 28, 28), t)                   # wrong image size
    with pytest.raises(TypeError, match="integer tensor"):
        model(x, t.float())
    with pytest.raises(TypeError, match="integer tensor"):
        model(x, 5)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        model(x, t[:, None])
    with pytest.raises(TypeError, match="floating-point"):
        model(x.long(), t)


def test_config_checks_and_round_trip():
    assert UNetConfig.from_dict(MNIST28.to_dict()) == MNIST28
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(image_size=28, channel_mults=(1, 2, 2, 2))     # 28 -> 14 -> 7 -> 3.5
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(base_channels=12, groups=8)
    with pytest.raises(ValueError, match="keys"):
        UNetConfig.from_dict({**DIGITS.to_dict(), "heads": 4})
    with pytest.raises(ValueError, match="size"):
        unet_config_for((1, 8, 8), "huge")
