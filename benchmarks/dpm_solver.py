"""Sample quality against network calls: DDIM and DPM-Solver++(2M) on the shipped digits model (notebook 08).

    python benchmarks/dpm_solver.py                       # 5 seeds, n = 1,000, DDPM-1000 too (run time: benchmarks/README.md)
    python benchmarks/dpm_solver.py --seeds 2 --no-ddpm   # shorter
    python benchmarks/dpm_solver.py --fast                # a smoke run (n = 200, one seed; not a measurement)
    python benchmarks/dpm_solver.py --device cuda --no-assets --out-dir runs/bench-gpu    # benchmarks/gpu.sh

FD with its real-vs-real floor (metrics.fd_with_floor) at n samples, for 5, 10, 15, 20 and 50 network calls,
each sampler decoding the same codes x_T within a seed; averaged over the seeds, because FD at n = 1,000 moves
by 10-40 % from one draw of x_T to the next. The claim it tests (issue 11): DPM-Solver++(2M) with 10 calls is no
worse than DDIM with 20. The comparison is paired (the same x_T and FD splits per seed): the table prints the
mean difference and its standard error over the seeds.

Prints the table and writes the experiment's data with its provenance (course/results.py) to
benchmarks/results/dpm-solver-digits-DATE.json and to assets/results/08_fd_calls.json, which notebook 08 loads,
so the README's table and the notebook's come from one run. The same code runs as
`python -m diffusion_lib results 08_fd_calls` (diffusion_lib/course/experiments/nb08.py, fd_against_calls).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from diffusion_lib.course.experiments import CALLS_08, fd_against_calls  # noqa: E402
from diffusion_lib.course.results import save_results  # noqa: E402


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error of the mean (nan for one value)."""
    n = len(values)
    m = sum(values) / n
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n) if n > 1 else math.nan)


def table(data: dict) -> str:
    seeds, calls = data["seeds"], data["calls"]
    names = list(data["fd"])
    lines = [f"FD at n = {data['n']} against network calls, mean +- s.e. over {len(seeds)} seed(s) {seeds} "
             f"(the same x_T for every sampler within a seed)",
             f"{'calls':>6s}" + "".join(f"{name:>34s}" for name in names)]
    for i, S in enumerate(calls):
        lines.append(f"{S:6d}" + "".join("{:>34s}".format("%.2f +- %.2f" % mean_se(data["fd"][name][i]))
                                          for name in names))
    if data["ddpm_1000"]:
        lines.append("DDPM-1000 (1,000 calls): %.2f +- %.2f" % mean_se(data["ddpm_1000"]))
    lines.append("real-vs-real floor: %.2f (one FD's spread at this n, floor_sd: %.2f)"
                 % (mean_se(data["floor"])[0], mean_se(data["floor_sd"])[0]))
    if 10 in calls and 20 in calls:
        i10, i20 = calls.index(10), calls.index(20)
        for name in names[1:]:
            d = [a - b for a, b in zip(data["fd"][name][i10], data["fd"]["DDIM"][i20])]
            m, se = mean_se(d)
            lines.append(f"{name} with 10 calls minus DDIM with 20, paired over seeds: {m:+.2f} +- {se:.2f} "
                         f"({'no worse' if m <= 0 else 'worse'} on average; per seed "
                         + ", ".join(f"{v:+.2f}" for v in d) + ")")
        r = [a / b for a, b in zip(data["fd"]["DDIM"][i10], data["fd"]["DDIM"][i20])]
        lines.append("FD(DDIM-10) / FD(DDIM-20): %.2f +- %.2f" % mean_se(r))
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in data["seconds"].items() if v)
    lines.append(f"sampling time over all seeds and call counts: {secs}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (x_T draws), from --seed on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", type=int, default=1000, help="samples per FD")
    parser.add_argument("--calls", type=int, nargs="+", default=list(CALLS_08))
    parser.add_argument("--no-ddpm", action="store_true", help="leave out the DDPM-1000 reference (~100 s a seed)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared machine)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--fast", action="store_true", help="smoke run: n = 200, one seed (writes nothing to assets/)")
    parser.add_argument("--no-assets", action="store_true",
                        help="do not write assets/results/08_fd_calls.json, the copy notebook 08 loads (e.g. on a GPU)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    start = time.perf_counter()
    data = fd_against_calls(seed=args.seed, fast=args.fast, n_seeds=args.seeds, n=args.n, calls=tuple(args.calls),
                            ddpm=not args.no_ddpm, device=args.device)
    seconds = time.perf_counter() - start
    data["load_average"] = {"start": list(load), "end": list(os.getloadavg())}
    data["threads"] = args.threads
    print(table(data))
    print(f"wall time {seconds:.0f} s; load average (1 min) at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}")
    command = " ".join(["python benchmarks/dpm_solver.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    day = datetime.date.today().isoformat()
    paths = [args.out_dir / f"dpm-solver-digits-{day}{'-fast' if args.fast else ''}.json"]
    if not (args.fast or args.no_assets):
        paths.append(REPO / "assets" / "results" / "08_fd_calls.json")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        print("wrote", save_results(path, "08_fd_calls", data, seconds, command))


if __name__ == "__main__":
    main()
