"""Benchmark: diffusion_lib against a diffusers peer, on one machine, in one run.

    python benchmarks/run.py --data digits [--quick] [--threads 2] [--out runs/bench]   # CPU
    python benchmarks/run.py --data mnist --data-root ../shared/data/mnist --out DIR    # one GPU
    bash benchmarks/gpu.sh DIR                                                          # the same, GPU

Prints a short table and writes everything to DIR/results.json. What it measures (README.md):
1. training: ours (the library's train() with the `cpu` or `gpu` preset) and the peer
   (diffusers' UNet2DModel + DDPMScheduler, train_unconditional.py's recipe; benchmarks/peer.py)
   train in interleaved slices, each on its own clock (peer slice, ours slice, ...), so that
   load from other jobs hits both alike. Training throughput = steps x batch / s per slice, median.
2. time-to-quality: the EMA weights are kept at fixed points of each clock; afterwards DDIM-50
   and DDPM-1000 samples of each snapshot are scored with the library's FD (metrics.fd_with_floor:
   a small classifier's features, with the real-vs-real floor at the same n). Ours reaches the
   peer's final quality at the first snapshot whose FD is at or below the peer's.
3. sampling throughput: seconds per sampling step (one model call + the update) of both, at
   several batch sizes, interleaved, median of rounds; images/s for DDPM-1000 and DDIM-10/20/50/100
   follow as batch / (steps x seconds per step). The full 1,000- (GPU: 2,000-) image DDPM-1000 and
   DDIM-50 runs of the last snapshots are timed too.
4. peak memory of each phase (CUDA: max_memory_allocated; CPU: peak resident set of the process).
Everything is seeded; wall times are what they are on a shared machine: the load average is recorded.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import harness  # noqa: E402
from peer import PEER_ARCH, build_unet, n_params  # noqa: E402

from diffusion_lib.data import load_dataset  # noqa: E402
from diffusion_lib.model.fast import FastModel, default_options, fast_model  # noqa: E402
from diffusion_lib.metrics import fd_with_floor  # noqa: E402
from diffusion_lib.training.config import PRESETS, make_schedule  # noqa: E402
from diffusion_lib.model.unet import UNet, model_summary, unet_config_for  # noqa: E402

# What each run does. Seconds are training seconds on each run's own clock.
PEER_LR_DIGITS, PEER_WARMUP_DIGITS = 1e-2, 50                     # the best of benchmarks/peer_lr.py
# n: samples per DDIM-50 FD; n_ddpm: per DDPM-1000 FD (ours and the peer alike, floor at the same n).
# peer_lr / peer_warmup: None keeps train_unconditional.py's recipe (1e-4, 500 warm-up steps). On the
# 2-core CPU the peer makes ~470 steps in its 120 s, all inside that warm-up, so the digits plan uses the
# best pair of benchmarks/peer_lr.py's sweep at 470 steps instead (in the peer's favour): lr 1e-2 with
# 50 warm-up steps, DDIM-50 FD 118 against 1,780 with the recipe (lr 1e-4 .. 3e-2 tried; 2026-11-30).
PLANS = {
    "digits": dict(peer_seconds=120, ours=[10, 20, 30, 40], peer=[40, 120], ddpm_ours=[10, 20, 40],
                   ddpm_peer=[120], n=1000, n_ddpm=500, sample_batch=1000, batches=[64, 256, 1000], k=8,
                   rounds=3, peer_batch=128, target_seconds=40, peer_lr=PEER_LR_DIGITS,
                   peer_warmup=PEER_WARMUP_DIGITS),
    "digits-quick": dict(peer_seconds=45, ours=[5, 10, 15], peer=[15, 45], ddpm_ours=[15], ddpm_peer=[45],
                         n=300, n_ddpm=300, sample_batch=300, batches=[300], k=5, rounds=2, peer_batch=128,
                         target_seconds=15, peer_lr=PEER_LR_DIGITS, peer_warmup=PEER_WARMUP_DIGITS),
    "mnist": dict(peer_seconds=200, ours=[15, 30, 45, 60], peer=[60, 200], ddpm_ours=[15, 30, 45, 60],
                  ddpm_peer=[200], n=2000, n_ddpm=2000, sample_batch=2000, batches=[250, 1000, 2000], k=20,
                  rounds=3, peer_batch=256, target_seconds=60, peer_lr=None, peer_warmup=None),
    "mnist-quick": dict(peer_seconds=60, ours=[10, 20], peer=[20, 60], ddpm_ours=[20], ddpm_peer=[60],
                        n=1000, n_ddpm=1000, sample_batch=1000, batches=[1000], k=10, rounds=2, peer_batch=256,
                        target_seconds=20, peer_lr=None, peer_warmup=None),
}
DDIM_STEPS = (10, 20, 50, 100)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("digits", "mnist"), default="digits")
    p.add_argument("--data-root", default=None, help="MNIST IDX folder (default ../shared/data/mnist if present)")
    p.add_argument("--quick", action="store_true", help="a few minutes: shorter training, fewer samples")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, the cores)")
    p.add_argument("--preset", default=None, help="our preset (default: gpu on CUDA, cpu elsewhere)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="folder for results.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply all training times (smoke tests)")
    p.add_argument("-n", type=int, default=None, help="samples per DDIM-50 FD (default: the plan's)")
    p.add_argument("--n-ddpm", type=int, default=None, help="samples per DDPM-1000 FD (default: the plan's)")
    p.add_argument("--peer-lr", type=float, default=None, help="peer learning rate (default: the plan's; recipe 1e-4)")
    p.add_argument("--peer-warmup", type=int, default=None,
                   help="peer warm-up steps (default: the plan's; recipe 500)")
    p.add_argument("--ablations", action="store_true", help="also time our speed options one by one")
    p.add_argument("--compile-ablation", action="store_true", help="include torch.compile in the ablations")
    p.add_argument("--ablations-only", action="store_true",
                   help="only the ablations, on the shipped model (digits, cpu preset) or a seeded random one")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a plan entry, e.g. --set batches=[16] --set ddpm_peer=[] (smoke tests)")
    return p.parse_args(argv)


def median(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None


def environment(device, threads) -> dict:
    import diffusers

    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__,
           "diffusers": diffusers.__version__, "python": platform.python_version(), "device": str(device),
           "threads": threads, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        env["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                          if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def load_data(args, device):
    """(ours' training set, the peer's training set (32x32 for MNIST), FD reference sets)."""
    if args.data == "digits":
        train = load_dataset("digits", "train")
        return train, train.images.to(device), load_dataset("digits", "all"), load_dataset("digits", "all")
    root = args.data_root or (ROOT.parent / "shared" / "data" / "mnist")
    ours = load_dataset("mnist", "test", root)                         # 28x28, the 10k test set
    padded = load_dataset("mnist", "test", root, pad_to=32)           # the peer's 32x32 input
    return ours, padded.images.to(device), ours, padded


def train_both(args, plan, device, ours_data, peer_images, out: Path) -> tuple:
    """Interleaved training on separate clocks; returns (ours run, peer run, snapshots, log)."""
    scale = args.time_scale
    preset = PRESETS[args.preset]
    model_config = unet_config_for(tuple(ours_data.shape), preset.model_size)
    # The peer's cosine schedule needs its horizon in steps: calibrate its rate for a few seconds.
    calib = harness.PeerRun(peer_images, plan["peer_batch"], 10**6, seed=args.seed + 1)
    calib.train_until(3.0 * min(1.0, scale) + 1.0)
    peer_rate = calib.step / calib.clock
    del calib
    planned = max(1, int(peer_rate * plan["peer_seconds"] * scale))
    lr = args.peer_lr or plan["peer_lr"]
    warmup = args.peer_warmup if args.peer_warmup is not None else plan["peer_warmup"]
    recipe = {**({"lr": lr} if lr else {}), **({"warmup_steps": warmup} if warmup is not None else {})}
    peer = harness.PeerRun(peer_images, plan["peer_batch"], planned, seed=args.seed, **recipe)
    ours = harness.OursRun(preset, ours_data, out / "ours.pt", device, seed=args.seed, model_config=model_config)
    # Slices: ours to each of its snapshot points; the peer, between two of ours, for `ratio` times as
    # long (ratio = the peer's total / ours), stopping at its own snapshot points on the way.
    ours_points = [round(scale * t, 6) for t in plan["ours"]]
    peer_points = [round(scale * t, 6) for t in plan["peer"]]
    ratio = peer_points[-1] / ours_points[-1]
    peer_stops = sorted(set(peer_points) | {round(ratio * t, 6) for t in ours_points})
    snaps = {"ours": [], "peer": []}
    for i, point in enumerate(ours_points):
        ours.train_until(point)
        snaps["ours"].append({**ours.snapshot(), "at": plan["ours"][i]})
        print(f"  ours to {ours.clock:7.1f} s, step {ours.step}", flush=True)
        last = i == len(ours_points) - 1
        while peer_stops and (last or peer_stops[0] <= ratio * point + 1e-6):
            stop = peer_stops.pop(0)
            peer.train_until(stop)
            if stop in peer_points:
                snaps["peer"].append({**peer.snapshot(), "at": plan["peer"][peer_points.index(stop)]})
            print(f"  peer to {peer.clock:7.1f} s, step {peer.step}", flush=True)
    return ours, peer, snaps, planned, peer_rate


def score(samples, reference, args, device) -> dict:
    root = None if args.data == "digits" else (args.data_root or str(ROOT.parent / "shared" / "data" / "mnist"))
    fd = fd_with_floor(samples, reference, seed=args.seed, device=device, root=root)
    return {k: fd[k] for k in ("fd", "floor", "floor_sd", "n")}


def evaluate(args, plan, device, ours, peer, snaps, refs, schedule, shape) -> list:
    """FD of DDIM-50 and DDPM-1000 samples of every snapshot; returns rows."""
    n = args.n or plan["n"]
    rows = []
    for who, run in (("ours", ours), ("peer", peer)):
        for snap in snaps[who]:
            model = run.model_from(snap)
            eps = fast_model(model) if who == "ours" else model
            row = {"who": who, "at": snap["at"], "clock": round(snap["clock"], 2), "step": snap["step"]}
            for sampler, steps in (("ddim", 50), ("ddpm", 1000)):
                if sampler == "ddpm" and snap["at"] not in plan[f"ddpm_{who}"]:
                    continue
                m = n if sampler == "ddim" else min(n, args.n_ddpm or plan["n_ddpm"])
                batch = min(m, plan["sample_batch"])
                with harness.PeakMemory(device) as mem:
                    if who == "ours":
                        x, secs = harness.sample_ours(eps, schedule, shape, m, sampler, steps, batch, args.seed + 7)
                    else:
                        x, secs = harness.sample_peer(model, m, sampler, steps, batch, args.seed + 7)
                fd = score(x, refs[who], args, device)
                row[f"{sampler}{steps}"] = {**fd, "seconds": round(secs, 2), "images_per_s": m / secs,
                                            "batch": batch, "peak_mib": mem.peak}
                print(f"  {who} at {snap['at']:>4} s: {sampler.upper()}-{steps} FD {fd['fd']:.3g} "
                      f"(floor {fd['floor']:.3g} +- {fd['floor_sd']:.2g}, n {fd['n']}), sampled in {secs:.1f} s",
                      flush=True)
            rows.append(row)
    return rows


def sampling_sweep(args, plan, device, ours_model, peer_model, schedule, shape, small_peer) -> dict:
    """Seconds per sampling step, interleaved over rounds; images/s derived per step count."""
    eps = fast_model(ours_model)
    models = {"ours": None, "peer": peer_model}
    if small_peer is not None:
        models["peer_small"] = small_peer
    out = {}
    for batch in plan["batches"]:
        per = {(who, s): [] for who in models for s in ("ddpm", "ddim")}
        mem = {who: None for who in models}
        for _ in range(plan["rounds"]):
            for who, m in models.items():
                for sampler in ("ddpm", "ddim"):
                    with harness.PeakMemory(device) as pm:
                        if who == "ours":
                            sec = harness.time_steps_ours(eps, schedule, (batch, *shape), sampler, plan["k"])
                        else:
                            sec = harness.time_steps_peer(m, batch, sampler, plan["k"])
                    per[(who, sampler)].append(sec)
                    mem[who] = max(mem[who] or 0, pm.peak or 0)
        res = {}
        for who in models:
            ddpm, ddim = median(per[(who, "ddpm")]), median(per[(who, "ddim")])
            res[who] = {"s_per_step_ddpm": ddpm, "s_per_step_ddim": ddim, "rounds_ddpm": per[(who, "ddpm")],
                        "rounds_ddim": per[(who, "ddim")], "peak_mib": mem[who],
                        "images_per_s": {"DDPM-1000": batch / (1000 * ddpm),
                                         **{f"DDIM-{k}": batch / (k * ddim) for k in DDIM_STEPS}}}
        res["ddpm_speedup"] = res["peer"]["s_per_step_ddpm"] / res["ours"]["s_per_step_ddpm"]
        res["ddim_speedup"] = res["peer"]["s_per_step_ddim"] / res["ours"]["s_per_step_ddim"]
        out[str(batch)] = res
        print(f"  batch {batch}: s/step DDPM ours {res['ours']['s_per_step_ddpm']:.4f} peer "
              f"{res['peer']['s_per_step_ddpm']:.4f} ({res['ddpm_speedup']:.2f}x); DDIM ours "
              f"{res['ours']['s_per_step_ddim']:.4f} peer {res['peer']['s_per_step_ddim']:.4f} "
              f"({res['ddim_speedup']:.2f}x)", flush=True)
    return out


def ablations(args, plan, device, ours_model, schedule, shape, preset, ours_data) -> dict:
    """Our speed options one at a time: seconds per DDPM step at the largest batch, and training steps/s."""
    batch = plan["batches"][-1]
    variants = {"plain model (readable path)": None,
                "fast_model, float32": dict(bf16=False, channels_last=False, cuda_graph=False)}
    cuda = device.type == "cuda"
    variants["fast_model, bf16"] = dict(bf16=True, channels_last=False, cuda_graph=False)
    variants["fast_model, channels_last"] = dict(bf16=False, channels_last=True, cuda_graph=False)
    if cuda:
        variants["fast_model, float32 + CUDA graph"] = dict(bf16=False, channels_last=False, cuda_graph=True)
        variants["fast_model, bf16 + CUDA graph (default)"] = dict(bf16=True, channels_last=False, cuda_graph=True)
        variants["fast_model, bf16 + channels_last + CUDA graph"] = dict(bf16=True, channels_last=True,
                                                                       cuda_graph=True)
    if args.compile_ablation:
        variants["fast_model, compile (+ defaults)"] = {**default_options(device), "compile": True}
    res = {"batch": batch, "sampling_s_per_step": {}, "compile_seconds": None}
    built = {}
    for name, opts in variants.items():
        start = time.perf_counter()
        built[name] = ours_model if opts is None else FastModel(ours_model, **opts)
        harness.time_steps_ours(built[name], schedule, (batch, *shape), "ddpm", 1)        # warm-up / compile
        if opts and opts.get("compile"):
            res["compile_seconds"] = time.perf_counter() - start
    for _ in range(plan["rounds"]):
        for name, eps in built.items():
            sec = harness.time_steps_ours(eps, schedule, (batch, *shape), "ddpm", plan["k"])
            res["sampling_s_per_step"].setdefault(name, []).append(sec)
    res["sampling_s_per_step"] = {k: median(v) for k, v in res["sampling_s_per_step"].items()}
    # Other model sizes (random weights: the time of a step does not depend on them), default options.
    res["sampling_s_per_step_by_size"] = {}
    for size in ("tiny", "small", "base"):
        config = unet_config_for(shape, size)
        eps = fast_model(UNet(config).to(device).eval())
        harness.time_steps_ours(eps, schedule, (batch, *shape), "ddpm", 1)
        sec = median([harness.time_steps_ours(eps, schedule, (batch, *shape), "ddpm", plan["k"])
                      for _ in range(plan["rounds"])])
        res["sampling_s_per_step_by_size"][size] = {"params": n_params(eps.model), "s_per_step": sec}
    # Same numbers? float32 fast paths must reproduce the plain model's samples (tests/test_fast_sampling.py).
    g = lambda: torch.Generator(device).manual_seed(3)                                  # noqa: E731
    from diffusion_lib.samplers.ddim import ddim_sample
    ref = ddim_sample(ours_model, (64, *shape), schedule, steps=10, generator=g())
    res["max_abs_diff_vs_plain_ddim10"] = {}
    for name, eps in built.items():
        x = ddim_sample(eps, (64, *shape), schedule, steps=10, generator=g())
        res["max_abs_diff_vs_plain_ddim10"][name] = float((x - ref).abs().max())
    # Training: channels_last and compile against the preset, a few seconds each.
    from dataclasses import replace
    train_opts = {"preset": {}, "channels_last": dict(channels_last=not preset.channels_last)}
    if args.compile_ablation:
        train_opts["compile"] = dict(compile=True)
    res["training_steps_per_s"] = {}
    for name, change in train_opts.items():
        run = harness.OursRun(replace(preset, **change), ours_data, args.out / f"abl_{name}.pt", device,
                              seed=args.seed)
        run.train_until(8.0 * args.time_scale + (60.0 if change.get("compile") else 0.0))
        res["training_steps_per_s"][name] = {"steady": median(run.rates), "steps": run.step,
                                             "clock": run.clock}
    for k, v in res.items():
        print(f"  {k}: {v}", flush=True)
    return res


def targets(args, plan, rows, sweep, n) -> dict:
    """Time-to-quality against the peer's final snapshot, and the DDPM-1000 sampling ratio."""
    peer_final = max((r for r in rows if r["who"] == "peer"), key=lambda r: r["at"])
    out = {"peer_seconds": plan["peer_seconds"], "target_seconds": plan["target_seconds"]}
    for key in ("ddpm1000", "ddim50"):
        ref = peer_final.get(key, {}).get("fd")
        ours = sorted((r for r in rows if r["who"] == "ours" and key in r), key=lambda r: r["at"])
        reached = next((r for r in ours if ref is not None and r[key]["fd"] <= ref), None)
        out[key] = {"peer_fd_at_end": ref, "ours_fd": {r["at"]: r[key]["fd"] for r in ours},
                    "ours_seconds_to_peer_quality": reached["at"] if reached else None,
                    "met": bool(reached and reached["at"] <= plan["target_seconds"])}
    largest = str(plan["batches"][-1])
    out["ddpm_sampling_speedup_at_batch_" + largest] = sweep[largest]["ddpm_speedup"]
    out["ddpm_sampling_met_5x"] = sweep[largest]["ddpm_speedup"] >= 5
    if args.data == "mnist":
        ours = sweep[largest]["ours"]
        out["ours_2000_images_seconds"] = {"DDIM-50": 2000 / ours["images_per_s"]["DDIM-50"],
                                           "DDPM-1000": 2000 / ours["images_per_s"]["DDPM-1000"]}
        out["gpu_sampling_met"] = (out["ours_2000_images_seconds"]["DDIM-50"] < 0.8
                                   and out["ours_2000_images_seconds"]["DDPM-1000"] < 15)
    return out


def table(result) -> str:
    lines = []
    env = result["environment"]
    lines.append(f"{env['date']}  {env.get('gpu', env['cpu'])}, torch {env['torch']}, diffusers "
                 f"{env['diffusers']}, threads {env['threads']}, load average {result['load_average']}")
    lines.append(f"models: ours {result['models']['ours']}; peer {result['models']['peer']}")
    tr = result["training"]
    lines.append("training (images/s, median of slices; peak MiB):")
    for who in ("ours", "peer"):
        t = tr[who]
        lines.append(f"  {who:5s} {t['images_per_s'] or float('nan'):9.0f} images/s  ({t['steps_per_s'] or 0:.1f} "
                     f"steps/s at batch {t['batch']}), {t['steps']} steps in {t['clock']:.0f} s, peak "
                     f"{t['peak_mib'] or 0:.0f} MiB")
    lines.append("time-to-quality: FD (floor +- sd, n) of EMA samples at training seconds")
    for r in result["quality"]:
        cells = []
        for key in ("ddim50", "ddpm1000"):
            if key in r:
                cells.append(f"{key.upper().replace('DDIM50', 'DDIM-50').replace('DDPM1000', 'DDPM-1000')} "
                             f"{r[key]['fd']:7.3g} ({r[key]['floor']:.3g} +- {r[key]['floor_sd']:.2g}, "
                             f"n {r[key]['n']})")
        lines.append(f"  {r['who']:5s} {r['at']:>4} s (step {r['step']:>5}): " + ";  ".join(cells))
    lines.append("sampling: images/s (seconds per step x steps), interleaved medians")
    for batch, res in result["sampling"].items():
        for who in [w for w in res if isinstance(res[w], dict)]:
            ips = res[who]["images_per_s"]
            lines.append(f"  batch {batch:>5} {who:10s} " + "  ".join(f"{k} {v:8.1f}" for k, v in ips.items())
                         + f"  peak {res[who]['peak_mib'] or 0:.0f} MiB")
        lines.append(f"  batch {batch:>5} speed-up ours/peer per step: DDPM {res['ddpm_speedup']:.2f}x, "
                     f"DDIM {res['ddim_speedup']:.2f}x")
    t = result["targets"]
    for key in ("ddpm1000", "ddim50"):
        v = t[key]
        if v["peer_fd_at_end"] is None:
            lines.append(f"target {key}: not measured (no {key} samples of the peer's last snapshot)")
            continue
        lines.append(f"target {key}: peer FD after {t['peer_seconds']} s = {v['peer_fd_at_end']:.3g}; ours reaches it "
                     f"at {v['ours_seconds_to_peer_quality']} s (target <= {t['target_seconds']} s): "
                     f"{'MET' if v['met'] else 'NOT MET'}")
    key = next(k for k in t if k.startswith("ddpm_sampling_speedup"))
    lines.append(f"target DDPM-1000 sampling >= 5x the peer: {t[key]:.2f}x "
                 f"({'MET' if t['ddpm_sampling_met_5x'] else 'NOT MET'})")
    if "ours_2000_images_seconds" in t:
        lines.append(f"target 2,000 images: {t['ours_2000_images_seconds']} "
                     f"({'MET' if t['gpu_sampling_met'] else 'NOT MET'})")
    lines.append(f"benchmark wall time {result['wall_seconds']:.0f} s")
    return "\n".join(lines)


def write_result(result: dict, path: Path, load0: tuple, wall: float) -> None:
    """Add the load average (start, end) and the wall time to `result` and write it as JSON."""
    load1 = os.getloadavg()
    result["load_average"] = f"{load0[0]:.2f} at start, {load1[0]:.2f} at end (1-min)"
    result["wall_seconds"] = time.perf_counter() - wall
    path.write_text(json.dumps(result, indent=1, default=str))


def main(argv=None) -> dict:
    args = parse_args(argv)
    wall = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    args.preset = args.preset or ("gpu" if device.type == "cuda" else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    plan = dict(PLANS[args.data + ("-quick" if args.quick else "")])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in plan:
            raise SystemExit(f"--set {item}: no plan entry {key!r}; entries: {sorted(plan)}")
        plan[key] = json.loads(value)
    load0 = os.getloadavg()
    print(f"benchmark {args.data}{' (quick)' if args.quick else ''} on {device}, threads "
          f"{torch.get_num_threads()}, preset {args.preset}; load average {load0[0]:.2f}", flush=True)
    ours_data, peer_images, ours_ref, peer_ref = load_data(args, device)
    shape = tuple(ours_data.shape)
    if args.ablations_only:
        # A trained model: the shipped checkpoint where it fits (digits, `cpu` preset). Otherwise the
        # initial weights plus seeded noise (the initial ones give eps = 0, the last conv starting at
        # zero); such a model's samples are not digits, but its step times and float32 differences count.
        preset = PRESETS[args.preset]
        config = unet_config_for(shape, preset.model_size)
        shipped = ROOT / "assets" / "digits.pt"
        from diffusion_lib.training.checkpoint import load_model
        if args.data == "digits" and shipped.exists() and load_model(shipped, "cpu")[2]["unet_config"] == config:
            model, weights = load_model(shipped, device)[0], str(shipped.relative_to(ROOT))
        else:
            model, weights = UNet(config).to(device).eval().requires_grad_(False), "initial + seeded noise"
            g = torch.Generator().manual_seed(args.seed)
            for param in model.parameters():
                param.add_(0.05 * torch.randn(param.shape, generator=g).to(device))
        print(f"ablations of our speed options (weights: {weights}):", flush=True)
        result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                  "environment": environment(device, torch.get_num_threads()),
                  "models": {"ours": model_summary(model)[1], "ours_params": n_params(model), "weights": weights},
                  "ablations": ablations(args, plan, device, model, make_schedule(preset), shape, preset,
                                         ours_data)}
        write_result(result, args.out / "ablations.json", load0, wall)
        print(f"ablations took {result['wall_seconds']:.0f} s; wrote {args.out / 'ablations.json'}")
        return result
    print("training (interleaved slices, each run on its own clock):", flush=True)
    ours, peer, snaps, planned, peer_rate = train_both(args, plan, device, ours_data, peer_images, args.out)
    schedule = make_schedule(PRESETS[args.preset])
    print("sample quality (FD):", flush=True)
    rows = evaluate(args, plan, device, ours, peer, snaps, {"ours": ours_ref, "peer": peer_ref}, schedule, shape)
    print("sampling throughput:", flush=True)
    ours_model, peer_model = ours.model_from(snaps["ours"][-1]), peer.model_from(snaps["peer"][-1])
    small = build_unet(8, small=True).to(device).eval() if args.data == "digits" else None
    sweep = sampling_sweep(args, plan, device, ours_model, peer_model, schedule, shape, small)
    preset = PRESETS[args.preset]
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "plan": plan, "environment": environment(device, torch.get_num_threads()),
        "models": {"ours": model_summary(ours_model)[1], "ours_params": n_params(ours_model),
                   "ours_preset": {**preset.to_dict()},
                   "peer": f"UNet2DModel {PEER_ARCH[peer_images.shape[-1]]['block_out_channels']}, "
                           f"{n_params(peer_model) / 1e6:.2f}M parameters", "peer_params": n_params(peer_model),
                   "peer_small_params": n_params(small) if small is not None else None,
                   "peer_recipe": peer.trainer.recipe, "peer_planned_steps": planned,
                   "peer_calibrated_steps_per_s": peer_rate},
        "training": {
            "ours": {"batch": preset.batch_size, "steps": ours.step, "clock": ours.clock,
                     "steps_per_s": median(ours.rates), "images_per_s": (median(ours.rates) or 0) * preset.batch_size,
                     "slice_rates": ours.rates, "peak_mib": max(m or 0 for m in ours.memory)},
            "peer": {"batch": plan["peer_batch"], "steps": peer.step, "clock": peer.clock,
                     "steps_per_s": median(peer.rates),
                     "images_per_s": (median(peer.rates) or 0) * plan["peer_batch"],
                     "slice_rates": peer.rates, "peak_mib": max(m or 0 for m in peer.memory)}},
        "quality": rows, "sampling": sweep,
    }
    result["targets"] = targets(args, plan, rows, sweep, args.n or plan["n"])
    if args.ablations:
        print("ablations of our speed options:", flush=True)
        result["ablations"] = ablations(args, plan, device, ours_model, schedule, shape, preset, ours_data)
    write_result(result, args.out / "results.json", load0, wall)
    print()
    print(table(result))
    print(f"\nwrote {args.out / 'results.json'}")
    return result


if __name__ == "__main__":
    main()
