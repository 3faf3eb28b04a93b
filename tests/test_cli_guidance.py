"""The command line with a class-conditional model (diffusion_lib/cli.py; notebooks/09).

What they check: `train --conditional` on the `fast` preset (a real subprocess) writes a conditional
checkpoint; `sample --label 7 --guidance 2` and `--label all` give exactly what the library gives
(ddim_sample of guided(model, labels, w), with the plain model, --no-fast), `--label all` meaning n/10 per
class in label order; `evaluate --label k` prints the FD against the real digits of class k with its floor
and the share read as the label asked for, and writes them to --json; bad input (a label outside 0..9 or not
a number, a label or a guidance weight for an unconditional checkpoint, a negative, infinite or NaN weight,
a weight without a label) exits non-zero with exactly one line on stderr.

All checks are deterministic (seeded, one CPU thread): designed false-failure rate 0.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lib import ddim_sample, guided
from diffusion_lib.cli import main
from diffusion_lib.training.checkpoint import load_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
UNCONDITIONAL = Path(__file__).resolve().parent.parent / "assets" / "digits.pt"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_cond") / "cond.pt"
    p = subprocess.run([sys.executable, "-m", "diffusion_lib", "train", "--data", "digits", "--preset", "fast",
                        "--conditional", "--steps", "30", "--seed", "0", "--out", str(out), "--device", "cpu",
                        "--threads", "1", "--no-progress"], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "10 classes" in p.stdout and "trained to step 30" in p.stdout
    return out


def library_samples(checkpoint, labels, w, steps, seed):
    model, schedule, _ = load_model(checkpoint, device="cpu")
    g = torch.Generator().manual_seed(seed)
    return ddim_sample(guided(model, labels, w), (len(labels), 1, 8, 8), schedule, steps=steps,
                       generator=g).clamp(-1, 1).numpy()


def test_sample_a_label_with_guidance_is_the_library(checkpoint, tmp_path, capsys):
    out = tmp_path / "sevens.npy"
    assert main(["sample", "--checkpoint", str(checkpoint), "--label", "7", "--guidance", "2.0", "--sampler", "ddim",
                 "--steps", "5", "-n", "6", "--seed", "0", "--out", str(out), "--no-progress", "--no-fast",
                 "--device", "cpu"]) == 0
    assert "label 7, guidance w = 2" in capsys.readouterr().out
    assert np.array_equal(np.load(out), library_samples(checkpoint, torch.full((6,), 7), 2.0, 5, 0))


def test_label_all_is_class_balanced_in_label_order(checkpoint, tmp_path, capsys):
    out = tmp_path / "all.npy"
    assert main(["sample", "--checkpoint", str(checkpoint), "--label", "all", "--guidance", "1", "--steps", "4",
                 "-n", "20", "--seed", "3", "--out", str(out), "--no-progress", "--no-fast", "--device", "cpu",
                 "--batch-size", "7"]) == 0          # batches of 7: the labels must follow the samples across batches
    labels = torch.arange(10).repeat_interleave(2)
    model, schedule, _ = load_model(checkpoint, device="cpu")
    g = torch.Generator().manual_seed(3)
    expected = torch.cat([ddim_sample(guided(model, labels[b:b + 7], 1.0), (len(labels[b:b + 7]), 1, 8, 8), schedule,
                                      steps=4, generator=g) for b in range(0, 20, 7)]).clamp(-1, 1).numpy()
    assert np.array_equal(np.load(out), expected)


def test_evaluate_a_label_prints_fd_of_its_class_and_the_accuracy(checkpoint, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--label", "3", "--guidance", "2", "-n", "30",
                 "--steps", "5", "--bpd-images", "4", "--json", str(report), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "FD against the real digits of class 3" in out and "floor" in out
    assert "as the label asked for" in out and "null label" in out
    numbers = json.loads(report.read_text())
    assert numbers["label"] == 3 and numbers["guidance"] == 2.0 and 0 <= numbers["accuracy"] <= 1
    assert numbers["fd"] > numbers["floor"] > 0 and numbers["n"] == 30 and np.isfinite(numbers["bpd"])
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--label", "all", "-n", "20", "--steps", "3",
                 "--bpd-images", "2", "--device", "cpu", "--no-progress"]) == 0
    assert "as the label asked for" in capsys.readouterr().out


def test_bad_labels_and_weights_give_one_line(checkpoint, tmp_path, capsys):
    ck, npy, plain = str(checkpoint), str(tmp_path / "x.npy"), str(UNCONDITIONAL)
    cases = [  # (arguments, expected status, text the message must contain)
        (["--checkpoint", ck, "--label", "10"], 2, "0..9"),
        (["--checkpoint", ck, "--label", "-1"], 2, "0..9"),
        (["--checkpoint", ck, "--label", "seven"], 2, "class number"),
        (["--checkpoint", ck, "--label", "3", "--guidance", "-1"], 2, "finite number >= 0"),
        (["--checkpoint", ck, "--label", "3", "--guidance", "inf"], 2, "finite number >= 0"),
        (["--checkpoint", ck, "--label", "3", "--guidance", "nan"], 2, "finite number >= 0"),
        (["--checkpoint", ck, "--guidance", "2"], 2, "--guidance needs --label"),
        (["--checkpoint", plain, "--label", "3"], 2, "unconditional model"),
        (["--checkpoint", plain, "--guidance", "1"], 2, "unconditional model"),
    ]
    for args, status, text in cases:
        for command in (["sample", *args, "--out", npy], ["evaluate", *args]):
            assert main([*command, "-n", "2", "--no-progress"]) == status, command
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and err.startswith("error: ") and text in err, (command, err)
    assert not (tmp_path / "x.npy").exists()
