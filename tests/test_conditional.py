"""Tests of training a class-conditional model with label dropout (diffusion_lib/training/, notebooks/09, sec. 3).

What they check: drop_labels replaces each label by the null label with probability p_uncond (Ho &
Salimans 2022, Algorithm 1, line 3; Monte Carlo within 4 standard errors) and keeps the others;
loss_on_batch with labels is Algorithm 1 with eps_theta(x_t, t, y); a conditional run gets
num_classes from the data set's labels and records num_classes and p_uncond in its checkpoint, and
loading checks them; mismatched settings give clear errors; label dropout trains the null label: after
a short run its embedding has moved and the unconditional eps differs from every conditional one,
sitting between the right label's and a wrong label's in L_simple; and a short run of the conditional
`fast` preset (300 steps, seconds) is already guided towards its labels: with w = 2 the digits classifier reads
the samples as their label more often than with w = 0, by at least 4 standard errors of the paired
difference, on 200 class-balanced samples from the same codes. (Resuming a conditional run bit for bit
is tested in test_train.py.)

Designed false-failure rates: the dropout-rate check is two-sided at 4 s.e. (6.3e-5); the loss ordering
and the guidance check are one-sided at 4 s.e. (3.2e-5 each, for a model that has the property); the rest is
deterministic (seeded, one CPU thread): about 1.3e-4 for the module.
"""
import math
from dataclasses import replace

import pytest
import torch

from diffusion_lib import PRESETS, ddim_sample, guided, linear_schedule, q_sample, train
from diffusion_lib.data import load_dataset
from diffusion_lib.metrics import classify, feature_classifier
from diffusion_lib.model.unet import TINY, UNet
from diffusion_lib.training.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from diffusion_lib.training.config import TrainConfig
from diffusion_lib.training.loop import drop_labels, loss_on_batch

K = 4.0
COND = replace(PRESETS["fast"], conditional=True, steps=300)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("cond") / "cond.pt"
    return train(COND, data=digits, out=path, seed=0, device="cpu", progress=False), path


def test_drop_labels_replaces_a_share_p_uncond_by_the_null_label():
    y = torch.arange(10).repeat(10_000)
    for p in (0.1, 0.5):
        out = drop_labels(y, p, 10, torch.Generator().manual_seed(0))
        dropped = out == 10
        assert torch.equal(out[~dropped], y[~dropped])                        # the others are kept as they are
        share, se = float(dropped.double().mean()), math.sqrt(p * (1 - p) / len(y))
        assert abs(share - p) <= K * se, (share, p, se)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(drop_labels(y, 0.2, 10, g1), drop_labels(y, 0.2, 10, g2))        # its draws are seeded


def test_loss_on_batch_with_labels_is_algorithm_1_conditioned():
    schedule = linear_schedule(1000)
    torch.manual_seed(0)
    model = UNet(replace(TINY, num_classes=10)).eval()
    x0, y = torch.rand(8, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 3, 10, 10, 9, 5])
    loss = loss_on_batch(model, x0, schedule, torch.Generator().manual_seed(7), y=y)
    g = torch.Generator().manual_seed(7)                                       # the same draws, in the same order
    t = torch.randint(1, 1001, (8,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    assert torch.equal(loss, ((eps - model(q_sample(x0, t, schedule, eps), t, y)) ** 2).mean())


def test_a_conditional_checkpoint_records_and_checks_its_labels(trained, tmp_path):
    result, path = trained
    ckpt = load_checkpoint(path)
    assert ckpt["unet_config"]["num_classes"] == 10 and result.model.config.num_classes == 10
    assert ckpt["train_config"]["conditional"] is True and ckpt["train_config"]["p_uncond"] == 0.1
    _, _, info = load_model(path)
    assert info["num_classes"] == 10 and info["p_uncond"] == 0.1
    broken = tmp_path / "broken.pt"
    save_checkpoint(dict(ckpt, train_config=dict(ckpt["train_config"], conditional=False)), broken)
    with pytest.raises(CheckpointError, match="num_classes = 10 but its TrainConfig has conditional = False"):
        load_model(broken)
    with pytest.raises(CheckpointError, match=r"p_uncond=0\.1 \(asked: 0\.2\)"):
        train(replace(COND, p_uncond=0.2), data=load_dataset("digits", "train"), out=path, resume=True,
              device="cpu", progress=False)


def test_bad_conditional_settings_give_clear_errors(digits):
    for p in (0.0, 1.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="p_uncond"):
            TrainConfig(conditional=True, p_uncond=p)
    with pytest.raises(ValueError, match="conditional"):
        TrainConfig(conditional="yes")
    with pytest.raises(ValueError, match="TrainConfig.conditional is False"):
        train(replace(COND, conditional=False, steps=1), data=digits, model_config=replace(TINY, num_classes=10),
              device="cpu", progress=False)
    with pytest.raises(ValueError, match="the data set has 10 classes"):
        train(replace(COND, steps=1), data=digits, model_config=replace(TINY, num_classes=3), device="cpu",
              progress=False)


def test_label_dropout_trains_the_null_label(trained, digits):
    result, _ = trained
    null = 10
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(0)                              # as train(seed=0) does
        init = UNet(replace(TINY, num_classes=10)).label_emb.weight[null]          # the run's initial weights
    moved = (result.model.label_emb.weight[null] - init).norm() / init.norm()
    assert moved > 0.01, float(moved)
    # L_simple of the three predictions on the same (x_0, t, eps), t in 200..600 where the label matters:
    # the right label < the null label (an average over the labels) < a wrong label (always (c + 5) mod 10)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(len(digits), (2000,), generator=g)
    x0, c = digits.images[idx], digits.labels[idx]
    t = torch.randint(200, 601, (2000,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    x_t = q_sample(x0, t, result.schedule, eps)
    with torch.no_grad():
        err = {name: ((eps - result.ema_model(x_t, t, y)) ** 2).flatten(1).mean(1)
               for name, y in (("right", c), ("null", torch.full_like(c, null)), ("wrong", (c + 5) % 10))}
    for low, high in (("right", "null"), ("null", "wrong")):
        d = err[high] - err[low]                                                   # paired over the same draws
        assert float(d.mean()) > K * float(d.std()) / math.sqrt(len(d)), (low, high, float(d.mean()))


def test_guidance_makes_a_short_run_draw_its_labels_more_often(trained):
    # 200 codes x_T, labels 20 per class; DDIM-20 with w = 0 and w = 2 from the same codes. Per code the
    # difference (read as its label at w = 2) - (at w = 0) is paired; its mean must exceed 0 by 4 s.e.
    result, _ = trained
    net = feature_classifier("digits", device="cpu")
    y = torch.arange(200) // 20
    x_T = torch.randn(200, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    hit = {w: (classify(net, ddim_sample(guided(result.ema_model, y, w), None, result.schedule, steps=20,
                                         x_T=x_T).clamp(-1, 1)) == y).double() for w in (0.0, 2.0)}
    d = hit[2.0] - hit[0.0]
    se = max(float(d.std()), 1 / len(d)) / math.sqrt(len(d))
    assert float(d.mean()) > K * se, (float(hit[0.0].mean()), float(hit[2.0].mean()), se)


def test_a_checkpoint_from_before_conditional_models_loads_and_resumes(digits, tmp_path):
    # Checkpoints written before num_classes, conditional and p_uncond existed lack those keys: they mean an
    # unconditional model, load as one, and resume exactly (10 + 10 steps equal 20 in one go).
    config = replace(PRESETS["fast"], steps=20, batch_size=16, save_every=0)
    full = train(config, data=digits, seed=1, device="cpu", progress=False)
    path = tmp_path / "old.pt"
    train(replace(config, steps=10), data=digits, out=path, seed=1, device="cpu", progress=False)
    ckpt = load_checkpoint(path)
    ckpt["unet_config"].pop("num_classes")
    for key in ("conditional", "p_uncond"):
        ckpt["train_config"].pop(key)
    save_checkpoint(ckpt, path)
    _, _, info = load_model(path)
    assert info["num_classes"] == 0 and info["p_uncond"] is None
    resumed = train(config, data=digits, out=path, resume=True, device="cpu", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(resumed.ema_model.state_dict().values(),
                                                full.ema_model.state_dict().values()))
