"""The command line: python -m diffusion_lib train | sample | evaluate | export | train-classifier.

    python -m diffusion_lib train  --data digits --preset cpu --seed 0 [--max-seconds 600] \
           --out runs/digits.pt [--resume] [--device cpu] [--threads 1]
    python -m diffusion_lib sample --checkpoint runs/digits.pt --sampler ddim --steps 50 --eta 0 \
           -n 1000 --seed 0 --out samples.npy        # float32 (N, C, H, W) in [-1, 1]
    python -m diffusion_lib sample --checkpoint runs/digits.pt --sampler ddpm -n 1000 --seed 0 \
           --out samples.npy
    python -m diffusion_lib evaluate --checkpoint runs/digits.pt
    python -m diffusion_lib export --checkpoint runs/digits.pt --out assets/digits.pt   # EMA weights only
    python -m diffusion_lib train-classifier --data digits --threads 1 --out assets/digits_classifier.pt
    torchrun --standalone --nproc_per_node=4 -m diffusion_lib train --data mnist --preset gpu ...
           # one process per GPU, DistributedDataParallel (diffusion_lib/training/distributed.py)

Errors print one line on stderr and exit with status 1 (2 for bad arguments, 130 on Ctrl-C);
--debug shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


class UsageError(Exception):
    """Bad command-line arguments (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):                      # one line instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _number(minimum: float, strict: bool):
    def parse(text: str) -> float:
        value = float(text)
        if not (value > minimum if strict else value >= minimum) or value != value:
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    common.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch (1 is fastest on a busy CPU)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sampling = _Parser(add_help=False)
    sampling.add_argument("--checkpoint", required=True, type=Path)
    sampling.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
    sampling.add_argument("--steps", type=_positive_int, default=None, help="DDIM steps, 1..T (default 50)")
    sampling.add_argument("--eta", type=_number(0, False), default=None, help="DDIM eta >= 0 (default 0)")
    sampling.add_argument("-n", type=_positive_int, default=1000, help="number of samples")
    sampling.add_argument("--seed", type=int, default=0)
    sampling.add_argument("--batch-size", type=_positive_int, default=500)
    sampling.add_argument("--no-fast", action="store_true",
                          help="call the plain model (float32, no CUDA graphs); see diffusion_lib/model/fast.py")
    data = _Parser(add_help=False)
    data.add_argument("--data-root", default=None, help="folder of the IDX files (MNIST-style sets)")
    data.add_argument("--download", action="store_true", help="download missing data files once")

    parser = _Parser(prog="python -m diffusion_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", parents=[common, data], help="train a UNet with L_simple (DDPM Algorithm 1)")
    t.add_argument("--data", default="digits", help="data set name (default digits)")
    t.add_argument("--split", choices=("train", "test", "all"), default="train",
                   help="which split to train on (offline MNIST has only 'test')")
    t.add_argument("--pad-to", type=_positive_int, default=None, help="pad images with -1 to this size (28 -> 32)")
    t.add_argument("--preset", choices=("fast", "cpu", "gpu"), default="cpu",
                   help="fast: seconds (tests); cpu: digits on a laptop CPU, ~4 min on 2 cores; gpu: one GPU, bf16")
    t.add_argument("--seed", type=int, default=None, help="default 0 (a resumed run keeps its own)")
    t.add_argument("--steps", type=_positive_int, default=None, help="override the preset's step count")
    t.add_argument("--max-seconds", type=_number(0, True), default=None, help="wall-clock budget")
    t.add_argument("--out", type=Path, default=None, help="checkpoint path (default runs/<data>.pt)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint at --out")
    t.add_argument("--overwrite", action="store_true", help="start over even if --out exists")
    s = sub.add_parser("sample", parents=[common, sampling], help="draw samples into a .npy file")
    s.add_argument("--out", type=Path, required=True, help=".npy file: float32 (N, C, H, W) in [-1, 1]")
    e = sub.add_parser("evaluate", parents=[common, sampling, data], help="FD with its floor, bits/dim")
    e.add_argument("--bpd-images", type=_positive_int, default=None, help="test images for bits/dim (default all)")
    e.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    x = sub.add_parser("export", parents=[common], help="copy a checkpoint keeping the EMA weights only")
    x.add_argument("--checkpoint", required=True, type=Path)
    x.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("train-classifier", parents=[common, data],
                       help="train the feature classifier of FD (the shipped assets/digits_classifier.pt)")
    c.add_argument("--data", default="digits", choices=("digits", "mnist", "fashion-mnist"))
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True, type=Path)
    return parser


def cmd_train(args) -> None:
    from .data import load_dataset
    from .training.distributed import world_from_env
    from .training.config import PRESETS
    from .training.loop import train
    from .model.unet import model_summary

    out = args.out or Path("runs") / f"{args.data}.pt"
    if out.exists() and not (args.resume or args.overwrite):
        raise ValueError(f"{out} exists: pass --resume to continue it or --overwrite to start over")
    pad = {"pad_to": args.pad_to} if args.pad_to else {}
    data = load_dataset(args.data, args.split, args.data_root, args.download, **pad)
    # --max-seconds covers the whole command: the start of Python and torch and the data loading count too
    budget = args.max_seconds - (time.monotonic() - _process_start()) if args.max_seconds else None
    if budget is not None and budget <= 0:
        raise ValueError(f"--max-seconds {args.max_seconds:g} was spent before training could start")
    overrides = {"steps": args.steps, "max_seconds": budget}
    config = replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    result = train(config, data=data, out=out, seed=args.seed, device=args.device, resume=args.resume,
                   progress=not args.no_progress)
    if not world_from_env().main:                  # under torchrun, rank 0 reports
        return
    last = result.history["loss"][-100:]
    print(model_summary(result.model)[1])
    print(f"trained to step {result.step} ({'time budget reached' if result.stopped_by == 'time' else 'done'}), "
          f"{result.seconds:.0f} s in all; L_simple over the last {len(last)} steps: "
          f"{sum(last) / max(1, len(last)):.4f}; checkpoint: {out}")


def _process_start() -> float:
    """time.monotonic() at the start of this process (Linux: from /proc), so --max-seconds covers the
    whole command, Python's and torch's start-up included; elsewhere: now."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])    # field 22: starttime
        uptime = float(open("/proc/uptime").read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - age if 0 <= age < 3600 else time.monotonic()
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def _load_and_sample(args):
    from .samplers.batch import sample_images
    from .training.checkpoint import load_model

    if args.sampler == "ddpm" and (args.steps is not None or args.eta is not None):
        raise UsageError("--steps and --eta are DDIM settings; DDPM always runs all T steps")
    model, schedule, info = load_model(args.checkpoint, device=args.device)
    steps, eta = args.steps or 50, args.eta or 0.0
    if args.sampler == "ddim" and not 1 <= steps <= schedule.T:
        raise UsageError(f"--steps must lie in 1..T = 1..{schedule.T} for this checkpoint, got {steps}")
    samples = sample_images(model, schedule, tuple(info["data"]["shape"]), args.n, args.sampler, steps, eta,
                            args.seed, args.batch_size, not args.no_progress, fast=not args.no_fast)
    label = f"DDIM-{steps} eta={eta:g}" if args.sampler == "ddim" else f"DDPM-{schedule.T}"
    return model, schedule, info, samples, label


def cmd_sample(args) -> None:
    if args.out.suffix != ".npy":
        raise UsageError(f"--out must end in .npy, got {args.out}")
    _, _, _, samples, label = _load_and_sample(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, samples.numpy())
    print(f"{label}: wrote {tuple(samples.shape)} float32 samples in [-1, 1] to {args.out}")


def cmd_evaluate(args) -> None:
    from . import metrics
    from .data import load_dataset, pad_images

    model, schedule, info, samples, label = _load_and_sample(args)
    name, levels = info["data"]["name"], info["data"]["levels"]
    root = {"root": args.data_root} if args.data_root else {}
    fd = metrics.fd_with_floor(samples, name, seed=args.seed, device=args.device, **root)
    test = load_dataset(name, "test", args.data_root, args.download).images[:args.bpd_images]
    if test.shape[-1] < info["data"]["shape"][-1]:               # trained on padded images (--pad-to)
        test = pad_images(test, info["data"]["shape"][-1])
    device = next(model.parameters()).device
    if not args.no_progress:
        print(f"bits/dim: {len(test)} test images x T = {schedule.T} model calls ...", file=sys.stderr)
    generator = torch.Generator(device).manual_seed(args.seed)
    bpd, se = metrics.bits_per_dim_of(model, test.to(device), schedule, levels, generator,
                                      batch_size=args.batch_size)
    print(f"{label}, {name}, step {info['step']}: FD {fd['fd']:.4g} (real-vs-real floor {fd['floor']:.4g}, "
          f"ratio {fd['fd'] / fd['floor']:.2f}, n = {fd['n']})" if fd["floor"] > 0 else f"FD {fd['fd']:.4g}")
    print(f"bits/dim (negative ELBO, an upper bound) on {len(test)} test images: {bpd:.4f} +- {se:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"sampler": label, "step": info["step"], **fd, "bpd": bpd, "bpd_se": se},
                                        indent=1))


def cmd_export(args) -> None:
    from .training.checkpoint import export_ema

    path = export_ema(args.checkpoint, args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB, EMA weights only)")


def cmd_train_classifier(args) -> None:
    from .metrics.classifier import build_classifier, save_classifier

    start = time.perf_counter()
    checkpoint = build_classifier(args.data, args.seed, args.device or "cpu", args.data_root)
    save_classifier(checkpoint, args.out)
    print(f"{args.data}: classifier trained on {checkpoint['trained_on']} in {time.perf_counter() - start:.1f} s; "
          f"accuracy on {checkpoint['held_out']}: {100 * checkpoint['held_out_accuracy']:.1f} %; saved to {args.out}")


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "export": cmd_export,
            "train-classifier": cmd_train_classifier}


def main(argv=None) -> int:
    """Run one command; returns the exit status (0 ok, 1 error, 2 bad arguments, 130 Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if args.threads:
            torch.set_num_threads(args.threads)
        COMMANDS[args.command](args)
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:                          # one line for a student; --debug for the traceback
        if debug:
            raise
        known = isinstance(e, (UsageError, ValueError, TypeError, OSError, FloatingPointError, RuntimeError))
        message = " ".join(str(e).split()) or type(e).__name__
        hint = "" if known else f" ({type(e).__name__}; --debug shows the traceback)"
        print(f"error: {message}{hint}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
