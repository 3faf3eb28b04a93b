"""Tests of the command line, python -m diffusion_lib (diffusion_lib/cli.py).

What they check: train -> sample (DDIM and DDPM) end to end in real subprocesses on the `fast`
preset, giving .npy files of the right shape, dtype float32 and range [-1, 1]; sampling is
reproducible from its seed; export keeps a loadable EMA-only file; evaluate reports exactly the FD
(with its floor) and bits/dim that the library's functions give on its samples; bad input
(unknown data set, missing or empty checkpoint, steps > T, negative eta, -n 0, DDIM options with
DDPM, an existing --out without --resume) exits non-zero with exactly one line on stderr and no traceback, and
--debug shows the traceback; --no-fast samples are bitwise the library's ddim_sample, and the
default fast path equals them (float32) or is within bf16 rounding of them (a CPU with bf16
instructions); the --max-seconds clock starts at the process start.

All checks are deterministic (seeded, one CPU thread): designed false-failure rate 0 per test
and for the module. Three subprocesses (train, DDIM sample, a bad input); the rest runs in-process through main().
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from diffusion_lib.training.checkpoint import CheckpointError, load_model
from diffusion_lib.cli import _process_start, main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
IMPORTED = time.monotonic()                       # this process started before this line ran


def cli(*args, timeout=300):
    """Run python -m diffusion_lib in a subprocess; returns (status, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "diffusion_lib", *map(str, args)], capture_output=True,
                       text=True, env=ENV, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "fast.pt"
    status, stdout, stderr = cli("train", "--data", "digits", "--preset", "fast", "--steps", 30, "--seed", 0,
                                 "--out", out, "--device", "cpu", "--threads", 1, "--no-progress")
    assert status == 0, stderr
    assert "trained to step 30" in stdout and out.is_file()
    return out


def test_train_then_sample_ddim_and_ddpm(checkpoint, tmp_path, capsys):
    ddim, ddpm = tmp_path / "ddim.npy", tmp_path / "ddpm.npy"
    status, stdout, stderr = cli("sample", "--checkpoint", checkpoint, "--sampler", "ddim", "--steps", 10,
                                 "--eta", 0, "-n", 6, "--batch-size", 4, "--seed", 0, "--out", ddim,
                                 "--threads", 1, "--no-progress")
    assert status == 0, stderr
    assert "DDIM-10" in stdout and str(ddim) in stdout
    # DDPM runs all T = 1000 steps: in this process, to spare another start of Python.
    assert main(["sample", "--checkpoint", str(checkpoint), "--sampler", "ddpm", "-n", "3", "--seed", "0",
                 "--out", str(ddpm), "--no-progress"]) == 0, capsys.readouterr().err
    for path, n in ((ddim, 6), (ddpm, 3)):
        x = np.load(path)
        assert x.shape == (n, 1, 8, 8) and x.dtype == np.float32
        assert np.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
        assert x.std() > 0.05                       # not a constant image


def test_sampling_is_reproducible_from_its_seed(checkpoint, tmp_path, capsys):
    files = [tmp_path / f"{name}.npy" for name in ("a", "b", "c")]
    for path, seed in zip(files, (0, 0, 1)):
        assert main(["sample", "--checkpoint", str(checkpoint), "--steps", "5", "-n", "4", "--seed", str(seed),
                     "--out", str(path), "--no-progress"]) == 0
    a, b, c = (np.load(p) for p in files)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_export_keeps_the_ema_weights(checkpoint, tmp_path, capsys):
    small = tmp_path / "small.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(small)]) == 0
    ema_small, _, info = load_model(small)
    ema_full, _, _ = load_model(checkpoint)
    assert not info["resumable"] and small.stat().st_size < checkpoint.stat().st_size
    assert all(torch.equal(a, b) for a, b in zip(ema_small.state_dict().values(), ema_full.state_dict().values()))


def test_evaluate_reports_the_metrics_of_its_own_samples(checkpoint, tmp_path, capsys):
    # An equivalence: evaluate is sample_images + fd_with_floor + bits_per_dim_of on the test split,
    # all from --seed. The same calls made here, on the same samples with the same seeded generator,
    # must give exactly the numbers it prints and writes (same code, same seed, one thread). A
    # seed that is not the default (2) shows that --seed reaches every random draw.
    from diffusion_lib.data import load_dataset
    from diffusion_lib.metrics import bits_per_dim_of, fd_with_floor
    from diffusion_lib.samplers.batch import sample_images

    report = tmp_path / "metrics.json"
    status = main(["evaluate", "--checkpoint", str(checkpoint), "-n", "20", "--steps", "5", "--seed", "2",
                   "--bpd-images", "4", "--json", str(report), "--device", "cpu", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    numbers = json.loads(report.read_text())
    model, schedule, _ = load_model(checkpoint, device="cpu")
    samples = sample_images(model, schedule, (1, 8, 8), 20, "ddim", steps=5, eta=0.0, seed=2, progress=False,
                            fast=True)
    fd = fd_with_floor(samples, "digits", seed=2, device="cpu")
    test = load_dataset("digits", "test")
    bpd, se = bits_per_dim_of(model, test.images[:4], schedule, test.levels, torch.Generator().manual_seed(2))
    assert fd["n"] == 20 and {k: numbers[k] for k in fd} == fd, (numbers, fd)
    assert (numbers["bpd"], numbers["bpd_se"]) == (bpd, se) and se > 0
    assert f"FD {fd['fd']:.4g} (real-vs-real floor {fd['floor']:.4g}" in out
    assert f"on 4 test images: {bpd:.4f} +- {se:.4f}" in out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def test_bad_input_gives_one_line_and_a_non_zero_status(checkpoint, tmp_path, capsys):
    ck, npy = str(checkpoint), str(tmp_path / "x.npy")
    (tmp_path / "empty.pt").write_bytes(b"")
    cases = [  # (arguments, expected status, text the message must contain)
        (["train", "--data", "no-such-set", "--out", str(tmp_path / "n.pt")], 1, "no-such-set"),
        (["train", "--preset", "huge"], 2, "huge"),
        (["train", "--out", ck], 1, "--resume"),
        (["train", "--resume", "--out", str(tmp_path / "none.pt"), "--preset", "fast"], 1, "does not exist"),
        (["sample", "--checkpoint", str(tmp_path / "none.pt"), "--out", npy], 1, "does not exist"),
        (["sample", "--checkpoint", str(tmp_path / "empty.pt"), "--out", npy], 1, "empty"),
        (["sample", "--checkpoint", ck, "--steps", "2000", "--out", npy], 2, "1..T = 1..1000"),
        (["sample", "--checkpoint", ck, "--eta", "-0.5", "--out", npy], 2, "eta"),
        (["sample", "--checkpoint", ck, "-n", "0", "--out", npy], 2, "positive"),
        (["sample", "--checkpoint", ck, "--sampler", "ddpm", "--steps", "10", "--out", npy], 2, "DDIM settings"),
        (["sample", "--checkpoint", ck, "--sampler", "euler", "--out", npy], 2, "euler"),
        (["sample", "--checkpoint", ck, "--out", str(tmp_path / "x.txt")], 2, ".npy"),
        (["evaluate", "--checkpoint", str(tmp_path / "none.pt")], 1, "does not exist"),
        ([], 2, "command"),
    ]
    for args, status, text in cases:
        assert main(args) == status, args
        assert text in one_error_line(capsys), args
    assert not (tmp_path / "x.npy").exists()


def test_ctrl_c_exits_130_with_one_line(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("diffusion_lib.training.loop.train", interrupted)
    assert main(["train", "--out", str(tmp_path / "k.pt")]) == 130
    one_error_line(capsys)


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "none.pt"
    with pytest.raises(CheckpointError, match="does not exist"):
        main(["sample", "--checkpoint", str(missing), "--out", str(tmp_path / "x.npy"), "--debug"])
    status, _, err = cli("sample", "--checkpoint", missing, "--out", tmp_path / "x.npy")    # the real entry point
    assert status == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("error: checkpoint") and "does not exist" in err


def test_fast_and_plain_sampling_agree_on_the_cpu(checkpoint, tmp_path, capsys):
    # --no-fast is the plain model: bitwise the library's ddim_sample. The default fast path is the
    # same numbers where it stays in float32, and differs by bf16 rounding where the CPU has bf16
    # instructions: eps_hat off by about bf16's unit roundoff (2^-8 = 0.4 %, RMS), which moves the
    # pixels of the deterministic DDIM map a little (a few pixels near a tipping point by more). A
    # mean of 0.05 in [-1, 1] bounds that with a wide margin, while samples from another seed lie
    # far further apart (both measured: README, Tests).
    from diffusion_lib import ddim_sample
    from diffusion_lib.model.fast import default_options

    fast, plain = tmp_path / "fast.npy", tmp_path / "plain.npy"
    for path, extra in ((fast, []), (plain, ["--no-fast"])):
        assert main(["sample", "--checkpoint", str(checkpoint), "--steps", "5", "-n", "4", "--seed", "3",
                     "--out", str(path), "--no-progress", "--device", "cpu", "--batch-size", "4", *extra]) == 0
    model, schedule, _ = load_model(checkpoint, device="cpu")
    g = torch.Generator().manual_seed(3)
    expected = ddim_sample(model, (4, 1, 8, 8), schedule, steps=5, generator=g).clamp(-1, 1).numpy()
    assert np.array_equal(np.load(plain), expected)
    if default_options("cpu")["bf16"]:
        assert np.abs(np.load(fast) - expected).mean() < 0.05
    else:
        assert np.array_equal(np.load(fast), expected)


def test_the_time_budget_counts_from_the_process_start():
    # --max-seconds covers Python's and torch's start-up: the clock starts before any module ran.
    start = _process_start()
    assert start <= IMPORTED <= time.monotonic()


@pytest.mark.serial          # wall-clock bounds: run alone (Makefile, `make test`)
def test_the_budget_of_a_command_includes_what_ran_before_training(monkeypatch, tmp_path, capsys):
    # The process "started" 1 s ago: with --max-seconds 3 the command must end 2 s after this call,
    # within +5 % / -10 % of the 3-s budget (a step of the fast preset takes a small fraction of the
    # 0.15-s margin; measured: README, Tests).
    start = time.monotonic()
    monkeypatch.setattr("diffusion_lib.cli._process_start", lambda: start - 1.0)
    code = main(["train", "--preset", "fast", "--steps", "1000000", "--max-seconds", "3", "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "b.pt")])
    wall = time.monotonic() - start + 1.0
    assert code == 0 and "time budget reached" in capsys.readouterr().out
    assert 0.9 * 3 <= wall <= 1.05 * 3, wall


def test_a_budget_spent_before_training_is_an_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("diffusion_lib.cli._process_start", lambda: time.monotonic() - 10.0)
    code = main(["train", "--preset", "fast", "--max-seconds", "5", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "b.pt")])
    assert code == 1 and "--max-seconds 5 was spent before training could start" in capsys.readouterr().err
