"""Tests of training and checkpoints (diffusion_lib/training/: loop.py, run_state.py, checkpoint.py).

What they check: L_simple is DDPM Algorithm 1 (t in 1..T, eps ~ N(0, I), x_t from q_sample);
the fused EMA update is d * ema + (1 - d) * theta; a short real run on digits lowers the loss
clearly; checkpoints round-trip exactly; a failing save leaves the old file intact; a pickle
that would run code is refused (and the payload is shown to be live); truncated, empty and
foreign files and mismatched configs give clear errors; resuming is exact: N steps in one go
equal N/2 + resume + N/2 bit for bit on the CPU (split by the step count, by a KeyboardInterrupt
raised in a callback, and by a real SIGINT); a non-finite loss stops with its step in the
message and keeps the last good checkpoint; the time budget is kept (test_cli.py checks that the
command line's budget counts from the process start).
Runs use a micro U-Net (8 channels) so that the module takes seconds.

Designed false-failure rates: every test is deterministic (seeded generators, one CPU thread)
except the two time-budget tests, whose wall-clock bounds hold unless a single training step takes
longer than 0.3 s (several times a step's measured time even under contention: README, Tests)
or the machine stalls the process for that long; the loss-decrease test compares seeded runs against a margin of
about 10 standard errors of a 20-step mean. So ~0 per test and for the module, apart from
scheduling stalls on an overloaded machine.
"""
import math
import os
import signal
import time
from dataclasses import replace

import pytest
import torch

from diffusion_lib import linear_schedule, q_sample
from diffusion_lib.training.checkpoint import (CheckpointError, export_ema, load_checkpoint, load_model,
                                      load_weights, save_checkpoint)
from diffusion_lib.training.config import PRESETS, TrainConfig
from diffusion_lib.training.loop import NonFiniteLossError, ema_update, loss_on_batch, train
from diffusion_lib.model.unet import UNet

import conftest                                   # MICRO, and the `digits` fixture (train split)

# dropout > 0 so that resuming must also restore the global RNG state (dropout draws from it)
MICRO = replace(conftest.MICRO, dropout=0.1)
CONFIG = replace(PRESETS["fast"], steps=20, batch_size=16, warmup_steps=5, log_every=5, save_every=0)


def run(config=CONFIG, data=None, **kw):
    return train(config, data=data, model_config=MICRO, progress=False, device="cpu", **kw)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    return run(data=digits, out=path, seed=3), path


# --- the loss and the EMA -------------------------------------------------------------------

def test_loss_on_batch_is_algorithm_1():
    schedule = linear_schedule(1000)
    torch.manual_seed(0)
    model = UNet(MICRO).eval()                                 # eval: no dropout, a deterministic eps_hat
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x0 = torch.rand(16, 1, 8, 8) * 2 - 1
    loss = loss_on_batch(model, x0, schedule, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)                      # the same draws, in the same order
    t = torch.randint(1, 1001, (16,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    expected = ((eps - model(q_sample(x0, t, schedule, eps), t)) ** 2).mean()
    assert torch.equal(loss, expected)
    seen = []                                                 # t always in 1..T, both ends reached
    recorder = lambda x, t: seen.append(t) or torch.zeros_like(x)      # noqa: E731
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        loss_on_batch(recorder, x0, linear_schedule(10), g)
    seen = torch.cat(seen)
    assert seen.dtype == torch.long and int(seen.min()) == 1 and int(seen.max()) == 10


def test_ema_update_is_an_exponential_moving_average():
    g = torch.Generator().manual_seed(0)
    ema = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    params = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    expected = [0.9 * e + 0.1 * p for e, p in zip(ema, params)]
    ema_update(ema, params, 0.9)
    assert all(torch.allclose(e, x, atol=1e-6, rtol=0) for e, x in zip(ema, expected))


def test_short_training_run_lowers_the_loss(digits):
    # The zero-initialised model starts at L_simple = E||eps||^2 = 1. Over 60 steps the mean of
    # the last 20 losses must fall below half the first 20's: a margin of over 10 standard errors of
    # a 20-step mean (the losses and the standard error, measured: README, Tests).
    result = run(replace(CONFIG, steps=60), data=digits, seed=0)
    loss = result.history["loss"]
    assert len(loss) == 60 and all(math.isfinite(v) for v in loss)
    first, last = sum(loss[:20]) / 20, sum(loss[-20:]) / 20
    assert last < 0.5 * first, (first, last)
    assert not result.ema_model.training and result.stopped_by == "steps"


# --- checkpoints ------------------------------------------------------------------------------

def test_checkpoint_round_trip(trained):
    result, path = trained
    ckpt = load_checkpoint(path)
    assert ckpt["unet_config"] == MICRO.to_dict()
    assert TrainConfig.from_dict(ckpt["train_config"]) == CONFIG
    assert ckpt["step"] == 20 and ckpt["seed"] == 3
    assert ckpt["data"] == {"name": "digits", "split": "train", "shape": [1, 8, 8], "levels": 17}
    assert torch.equal(ckpt["history"]["loss"], torch.tensor(result.history["loss"], dtype=torch.float32))
    import diffusion_lib
    assert ckpt["library_version"] == diffusion_lib.__version__
    ema, schedule, info = load_model(path, device="cpu")
    assert same_weights(ema, result.ema_model) and not ema.training
    assert not any(p.requires_grad for p in ema.parameters())
    assert torch.equal(schedule.betas, result.schedule.betas) and schedule.T == 1000
    assert info["unet_config"] == MICRO and info["step"] == 20 and info["resumable"]


def test_exported_checkpoint_samples_but_does_not_resume(trained, tmp_path, digits):
    result, path = trained
    small = export_ema(path, tmp_path / "small.pt")
    assert small.stat().st_size < path.stat().st_size
    ema, _, info = load_model(small)
    assert same_weights(ema, result.ema_model) and not info["resumable"]
    with pytest.raises(CheckpointError, match="EMA weights only"):
        run(data=digits, out=small, resume=True)


def test_interrupted_save_leaves_the_old_file_intact(trained, tmp_path, monkeypatch):
    _, path = trained
    target = tmp_path / "model.pt"
    target.write_bytes(path.read_bytes())
    before = target.read_bytes()

    def failing_save(obj, f):                     # half a file, then the disk "fills up"
        f.write(before[: len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr("diffusion_lib.training.checkpoint.torch.save", failing_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(load_checkpoint(path), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]        # no temporary file left


class Payload:
    """Unpickling this creates a file: the shape of a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": "diffusion_lib checkpoint", "ema": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)          # the payload is live: unsafe loading runs it
    assert marker.exists()


def test_truncated_empty_and_foreign_files_give_clear_errors(trained, tmp_path):
    _, path = trained
    data = path.read_bytes()
    cases = {"truncated.pt": (data[: len(data) // 2], "truncated"), "empty.pt": (b"", "empty"),
             "notes.pt": (b"just some text\n", "truncated, corrupt or not a PyTorch file|refused")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / name)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a diffusion_lib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_mismatched_configs_give_clear_errors(trained, digits):
    _, path = trained
    with pytest.raises(CheckpointError, match=r"lr=0\.002 \(asked: 0\.01\)"):
        run(replace(CONFIG, lr=0.01), data=digits, out=path, resume=True)
    with pytest.raises(CheckpointError, match="base_channels=8 \\(asked: 16\\)"):
        train(CONFIG, data=digits, out=path, resume=True, progress=False, device="cpu",
              model_config=replace(MICRO, base_channels=16))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_weights(UNet(replace(MICRO, base_channels=16)), load_checkpoint(path)["ema"], "EMA", path)


# --- resuming ---------------------------------------------------------------------------------

def test_resume_is_exact(digits, trained, tmp_path):
    # 20 steps in one go (the `trained` fixture) versus 10 + resume + 10: identical bits.
    # Model, EMA and optimizer state are compared with torch.equal (bitwise), history exactly.
    full, _ = trained
    path = tmp_path / "half.pt"
    run(replace(CONFIG, steps=10), data=digits, out=path, seed=3)
    assert load_checkpoint(path)["step"] == 10
    resumed = run(data=digits, out=path, resume=True)
    assert resumed.step == 20
    assert same_weights(resumed.model, full.model) and same_weights(resumed.ema_model, full.ema_model)
    assert resumed.history == full.history
    a, b = load_checkpoint(path)["optimizer"]["state"], full_optimizer_state(trained)
    assert all(torch.equal(a[i][k], b[i][k]) for i in a for k in a[i])


def test_conditional_resume_is_exact(digits, tmp_path):
    # A conditional run (notebooks/09) also drops labels, drawing from the generator of t and eps: 20 steps in
    # one go versus 10 + resume + 10 must again be identical bits.
    config = replace(CONFIG, conditional=True)
    full = run(config, data=digits, seed=3)
    path = tmp_path / "conditional_half.pt"
    run(replace(config, steps=10), data=digits, out=path, seed=3)
    resumed = run(config, data=digits, out=path, resume=True)
    assert resumed.model.config.num_classes == 10 and resumed.step == 20
    assert same_weights(resumed.model, full.model) and same_weights(resumed.ema_model, full.ema_model)
    assert resumed.history == full.history


def full_optimizer_state(trained):
    return load_checkpoint(trained[1])["optimizer"]["state"]


def test_keyboard_interrupt_saves_and_resume_continues(digits, trained, tmp_path):
    full, _ = trained
    path = tmp_path / "interrupted.pt"

    def interrupt(step, model):
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(data=digits, out=path, seed=3, callback=interrupt)
    assert load_checkpoint(path)["step"] == 10
    resumed = run(data=digits, out=path, resume=True)
    assert same_weights(resumed.model, full.model) and same_weights(resumed.ema_model, full.ema_model)


def test_sigint_stops_at_the_end_of_a_step_and_saves(digits, trained, tmp_path):
    full, _ = trained
    path = tmp_path / "sigint.pt"
    handler_before = signal.getsignal(signal.SIGINT)

    def ctrl_c(step, model):
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)   # as Ctrl-C in a terminal or Jupyter's interrupt

    with pytest.raises(KeyboardInterrupt):
        run(data=digits, out=path, seed=3, callback=ctrl_c)
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert load_checkpoint(path)["step"] == 7
    resumed = run(data=digits, out=path, resume=True)
    assert same_weights(resumed.ema_model, full.ema_model)


# --- failures and budgets ---------------------------------------------------------------------

def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    path = tmp_path / "nan.pt"

    def poison(step, model):                       # from step 18 on, eps_hat is NaN
        if step == 17:
            model.register_forward_hook(lambda module, inputs, output: output * float("nan"))

    config = replace(CONFIG, save_every=10)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 18\b.*step 10\) is kept"):
        run(config, data=digits, out=path, seed=0, callback=poison)
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    # lr = 1e30: step 1's loss is computed with the initial weights, step 2's with blown-up ones.
    with pytest.raises(NonFiniteLossError, match="at step 2\\b"):
        run(replace(CONFIG, lr=1e30, warmup_steps=0), data=digits, seed=0)


@pytest.fixture(scope="module")
def warm():
    """The first optimizer of a process imports torch._dynamo (seconds on a busy machine): do it
    before the timed tests, whose budget is for training, not for Python's imports."""
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


@pytest.mark.serial          # wall-clock bounds: run alone (Makefile, `make test`)
def test_max_seconds_is_respected(digits, tmp_path, warm):
    # Budget 3 s for the whole call (data set passed in, so little set-up). The run must stop
    # within 3 s + 5 % and not more than 10 % early (a step takes a small fraction of the 0.15-s
    # margin; measured: README, Tests).
    budget = 3.0
    start = time.monotonic()
    result = run(replace(CONFIG, steps=10**6, max_seconds=budget), data=digits, out=tmp_path / "t.pt")
    wall = time.monotonic() - start
    assert result.stopped_by == "time" and result.step > 10
    assert 0.9 * budget <= wall <= 1.05 * budget, wall
    assert load_checkpoint(tmp_path / "t.pt")["step"] == result.step
