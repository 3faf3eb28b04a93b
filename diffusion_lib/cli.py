"""The command line: python -m diffusion_lib train | sample | evaluate | export | train-classifier.

    python -m diffusion_lib train  --data digits --preset cpu --seed 0 [--max-seconds 600] \
           --out runs/digits.pt [--resume] [--device cpu] [--threads 1]
    python -m diffusion_lib sample --checkpoint runs/digits.pt --sampler ddim --steps 50 --eta 0 \
           -n 1000 --seed 0 --out samples.npy        # float32 (N, C, H, W) in [-1, 1]
    python -m diffusion_lib sample --checkpoint runs/digits.pt --sampler ddpm -n 1000 --seed 0 \
           --out samples.npy
    python -m diffusion_lib sample --checkpoint runs/digits.pt --sampler dpm --steps 10 [--order 2] \
           -n 1000 --seed 0 --out samples.npy      # DPM-Solver++(2M): 10 network calls
    python -m diffusion_lib evaluate --checkpoint runs/digits.pt
    python -m diffusion_lib sample --checkpoint assets/digits_cond.pt --label 7 --guidance 2.0 --sampler ddim \
           --steps 50 -n 100 --seed 0 --out sevens.npy   # a conditional model; --label all: n/10 per class
    python -m diffusion_lib export --checkpoint runs/digits.pt --out assets/digits.pt   # EMA weights only
    python -m diffusion_lib train-classifier --data digits --threads 1 --out assets/digits_classifier.pt
    python -m diffusion_lib results table1 --out assets/results/06_table1.json   # a course experiment
    torchrun --standalone --nproc_per_node=4 -m diffusion_lib train --data mnist --preset gpu ...
           # one process per GPU, DistributedDataParallel (diffusion_lib/training/distributed.py)

Errors print one line on stderr and exit with status 1 (2 for bad arguments, 130 on Ctrl-C);
--debug shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
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
        if not (value > minimum if strict else value >= minimum) or not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {minimum:g}, "
                                             f"got {text}")
        return value
    return parse


def _percentile(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentile in (0, 100], such as 99.5, got {text}")
    return value


def _label(text: str):
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a class number such as 7, or all, got {text}") from None


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    common.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch (1 is fastest on a busy CPU)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sampling = _Parser(add_help=False)
    sampling.add_argument("--checkpoint", required=True, type=Path)
    sampling.add_argument("--sampler", choices=("ddim", "ddpm", "dpm"), default="ddim",
                          help="ddim, ddpm, or dpm (DPM-Solver++, notebook 08)")
    sampling.add_argument("--steps", type=_positive_int, default=None,
                          help="DDIM or DPM-Solver++ steps = network calls, 1..T (default 50 for ddim, 20 for dpm)")
    sampling.add_argument("--order", type=int, choices=(1, 2), default=None,
                          help="DPM-Solver++ order: 2 = DPM-Solver++(2M) (default), 1 = the same steps as DDIM")
    sampling.add_argument("--eta", type=_number(0, False), default=None, help="DDIM eta >= 0 (default 0)")
    sampling.add_argument("-n", type=_positive_int, default=1000, help="number of samples")
    sampling.add_argument("--seed", type=int, default=0)
    sampling.add_argument("--batch-size", type=_positive_int, default=500)
    sampling.add_argument("--label", type=_label, default=None,
                          help="a conditional model's class (0..9 for digits), or all: n/10 per class in label order")
    sampling.add_argument("--guidance", type=_number(0, False), default=None,
                          help="classifier-free guidance weight w >= 0 (default 0): (1 + w) eps(c) - w eps(null)")
    sampling.add_argument("--guidance-interval", type=_positive_int, nargs=2, default=None, metavar=("T_LO", "T_HI"),
                          help="guide only for T_LO <= t <= T_HI, conditional elsewhere (Kynkaanniemi et al. 2024)")
    sampling.add_argument("--threshold", type=_percentile, default=None, metavar="P",
                          help="dynamic thresholding of the predicted x0 at percentile P, e.g. 99.5 (Imagen, "
                               "Saharia et al. 2022): keeps large guidance weights from saturating")
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
                   help="fast: the tests' tiny run; cpu: digits on a laptop CPU (its time: README, Speed); "
                        "gpu: one GPU, bf16")
    t.add_argument("--seed", type=int, default=None, help="default 0 (a resumed run keeps its own)")
    t.add_argument("--steps", type=_positive_int, default=None, help="override the preset's step count")
    t.add_argument("--max-seconds", type=_number(0, True), default=None, help="wall-clock budget")
    t.add_argument("--out", type=Path, default=None, help="checkpoint path (default runs/<data>.pt)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint at --out")
    t.add_argument("--overwrite", action="store_true", help="start over even if --out exists")
    t.add_argument("--conditional", action="store_true",
                   help="a class-conditional model with label dropout (classifier-free guidance, notebook 09)")
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
    r = sub.add_parser("results", parents=[common],
                       help="run one of the course's experiments and save it with its provenance (assets/results/)")
    r.add_argument("name", help="the experiment (diffusion_lib/course/experiments/)")
    r.add_argument("--out", required=True, type=Path, help=".json file")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--fast", action="store_true", help="the small version the tests run")
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
    overrides = {"steps": args.steps, "max_seconds": budget, "conditional": args.conditional or None}
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

    if args.sampler == "ddpm" and (args.steps is not None or args.eta is not None or args.order is not None):
        raise UsageError("--steps, --eta and --order are DDIM settings (--steps and --order also DPM-Solver++'s); "
                         "DDPM always runs all T steps")
    if args.sampler == "dpm" and args.eta is not None:
        raise UsageError("--eta is a DDIM setting; DPM-Solver++ solves the ODE, without noise (--sampler ddim for eta)")
    if args.sampler == "ddim" and args.order is not None:
        raise UsageError("--order is a DPM-Solver++ setting (--sampler dpm); DDIM is first order")
    model, schedule, info = load_model(args.checkpoint, device=args.device)
    steps, eta, order = args.steps or (20 if args.sampler == "dpm" else 50), args.eta or 0.0, args.order or 2
    if args.sampler in ("ddim", "dpm") and not 1 <= steps <= schedule.T:
        raise UsageError(f"--steps must lie in 1..T = 1..{schedule.T} for this checkpoint, got {steps}")
    labels, w = _sample_labels(args, info), args.guidance or 0.0
    samples = sample_images(model, schedule, tuple(info["data"]["shape"]), args.n, args.sampler, steps, eta,
                            args.seed, args.batch_size, not args.no_progress, fast=not args.no_fast, order=order,
                            labels=labels, guidance=w, guidance_interval=args.guidance_interval,
                            threshold=args.threshold)
    label = {"ddim": f"DDIM-{steps} eta={eta:g}", "ddpm": f"DDPM-{schedule.T}",
             "dpm": f"DPM-Solver++({order}M)-{steps}" if order == 2 else f"DPM-Solver++1-{steps}"}[args.sampler]
    label += "" if labels is None else f", label {args.label}, guidance w = {w:g}"
    label += "" if args.guidance_interval is None else " for t in {}..{}".format(*args.guidance_interval)
    label += "" if args.threshold is None else f", dynamic thresholding at p = {args.threshold:g}"
    return model, schedule, info, samples, label


def _sample_labels(args, info):
    """The class of every sample, LongTensor (n,), from --label (an int, or all: n/C per class in
    label order); None without --label."""
    C = info["num_classes"]
    if args.guidance_interval is not None and not args.guidance_interval[0] <= args.guidance_interval[1]:
        raise UsageError(f"--guidance-interval T_LO T_HI needs T_LO <= T_HI, got {args.guidance_interval}")
    if not C and (args.label is not None or args.guidance is not None):
        raise UsageError(f"{args.checkpoint} is an unconditional model: --label and --guidance need a "
                         f"class-conditional checkpoint (train --conditional)")
    if args.label is None:
        if args.guidance is not None or args.guidance_interval is not None:
            raise UsageError(f"--guidance needs --label, the class to guide towards (0..{C - 1}, or all)")
        return None
    if args.label == "all":
        return torch.arange(args.n) * C // args.n
    if not 0 <= args.label < C:
        raise UsageError(f"--label must lie in 0..{C - 1} (or be all) for this checkpoint, got {args.label}")
    return torch.full((args.n,), args.label)


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
    from .samplers.guidance import unconditional

    model, schedule, info, samples, label = _load_and_sample(args)
    name, levels = info["data"]["name"], info["data"]["levels"]
    root = {"root": args.data_root} if args.data_root else {}
    pool = _class_pool(args, name)                                # --label k: the real images of class k
    fd = metrics.fd_with_floor(samples, name if pool is None else pool, seed=args.seed, device=args.device, **root)
    accuracy = _label_accuracy(args, info, samples, name)
    test = load_dataset(name, "test", args.data_root, args.download).images[:args.bpd_images]
    if test.shape[-1] < info["data"]["shape"][-1]:               # trained on padded images (--pad-to)
        test = pad_images(test, info["data"]["shape"][-1])
    device = next(model.parameters()).device
    if not args.no_progress:
        print(f"bits/dim: {len(test)} test images x T = {schedule.T} model calls ...", file=sys.stderr)
    generator = torch.Generator(device).manual_seed(args.seed)
    bpd, se = metrics.bits_per_dim_of(unconditional(model) if info["num_classes"] else model, test.to(device),
                                      schedule, levels, generator, batch_size=args.batch_size)
    against = f" against the real {name} of class {args.label}" if pool is not None else ""
    print(f"{label}, {name}, step {info['step']}: FD{against} {fd['fd']:.4g} (real-vs-real floor {fd['floor']:.4g}, "
          f"ratio {fd['fd'] / fd['floor']:.2f}, n = {fd['n']})" if fd["floor"] > 0 else f"FD {fd['fd']:.4g}")
    if accuracy is not None:
        print(f"the {name} classifier reads {100 * accuracy:.1f}% of the {len(samples)} samples as the label asked for")
    null = " (the null label: the model without a class)" if info["num_classes"] else ""
    print(f"bits/dim (negative ELBO, an upper bound) on {len(test)} test images{null}: {bpd:.4f} +- {se:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"sampler": label, "step": info["step"], **fd, "bpd": bpd, "bpd_se": se,
                                         "label": args.label, "guidance": args.guidance,
                                         "guidance_interval": args.guidance_interval, "threshold": args.threshold,
                                         "accuracy": accuracy},
                                        indent=1))


def _class_pool(args, name: str):
    """The real images of the class asked for (--label k), which FD then compares with; None otherwise."""
    if not isinstance(args.label, int):
        return None
    from .data import load_dataset, of_class

    return of_class(load_dataset(name, "all" if name == "digits" else "test", args.data_root), args.label)


def _label_accuracy(args, info, samples, name: str):
    """The share of samples that the data set's classifier reads as their asked-for label; None without --label."""
    labels = _sample_labels(args, info)
    if labels is None:
        return None
    from .metrics import classify, feature_classifier

    net = feature_classifier(name, args.device, args.data_root)
    return float((classify(net, samples) == labels).double().mean())


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


def cmd_results(args) -> None:
    from .course.experiments import run_experiment
    from .course.results import save_results

    if args.out.suffix != ".json":
        raise UsageError(f"--out must end in .json, got {args.out}")
    start = time.perf_counter()
    data = run_experiment(args.name, seed=args.seed, fast=args.fast)
    command = "python -m diffusion_lib " + " ".join(shlex.quote(a) for a in args.argv)
    path = save_results(args.out, args.name, data, time.perf_counter() - start, command)
    print(f"{args.name}: {time.perf_counter() - start:.0f} s; wrote {path}")


COMMANDS = {"results": cmd_results, "train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "export": cmd_export,
            "train-classifier": cmd_train_classifier}


def main(argv=None) -> int:
    """Run one command; returns the exit status (0 ok, 1 error, 2 bad arguments, 130 Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
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
