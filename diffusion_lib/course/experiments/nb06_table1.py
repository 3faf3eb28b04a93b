"""Notebook 06, sec. 5.3: the DDIM paper's Table 1 on the digits model, samplers that share one model and one code set."""
from __future__ import annotations

import dataclasses

from .common import Sampler, _codes, _setup, black_fraction, draw
from .registry import experiment


def sampler_table(net, schedule, rows, x_T, data: str, noise_seed: int = 0, fd_seed: int = 0, halves: bool = False):
    """Sample every row from the same codes x_T and score it: ([record per row], {label: samples}).

    Each record: the row's fields, its label, `calls` (network evaluations per image), n, `seconds` (wall time of
    the sampler), `fd`, `floor`, `floor_sd` (metrics.fd_with_floor against `data` with seed fd_seed: the same
    reference splits for every row), `pixel_std`, `black` (black_fraction); with halves, `fd_halves`: the FD of the
    first and of the second half of the codes (two independent samples of n / 2). notebooks/06, sec. 5.3.
    """
    import time

    from ...metrics.fd import fd_with_floor

    records, samples = [], {}
    for row in rows:
        start = time.perf_counter()
        x = draw(net, schedule, row, x_T, noise_seed)
        seconds = time.perf_counter() - start
        score = fd_with_floor(x, data, seed=fd_seed)
        record = {**dataclasses.asdict(row), "label": row.label, "calls": row.steps, "n": len(x),
                  "seconds": seconds, "fd": score["fd"], "floor": score["floor"], "floor_sd": score["floor_sd"],
                  "pixel_std": float(x.std()), "black": black_fraction(x)}
        if halves:
            record["fd_halves"] = [fd_with_floor(h, data, seed=fd_seed)["fd"] for h in x.chunk(2)]
        records.append(record)
        samples[row.label] = x
    return records, samples


def table_text(records, se=None) -> str:
    """The records of sampler_table as a text table; se: {label: standard error of its FD} to print beside it."""
    lines = [f"{'sampler':44s} {'calls':>5s} {'FD':>7s} {'s.e.':>6s} {'floor':>6s} {'seconds':>8s} {'ms/image':>8s}"]
    for r in records:
        s = (se or {}).get(r["label"])
        lines.append(f"{r['label']:44s} {r['calls']:5d} {r['fd']:7.2f} {'' if s is None else f'{s:6.2f}':>6s} "
                     f"{r['floor']:6.2f} {r['seconds']:8.1f} {1e3 * r['seconds'] / r['n']:8.2f}")
    return "\n".join(lines)


TABLE1_STEPS = (10, 20, 50, 100, 1000)


def table1_rows(steps=TABLE1_STEPS, etas=(0.0, 0.5, 1.0), sigma_hat: bool = True, T: int = 1000) -> list:
    """The DDIM paper's Table 1 grid: DDIM for each eta and S (eta = 1 at S = T run as DDPM itself, ddpm_sample with
    beta_tilde), and the sigma_hat rows."""
    rows = [Sampler("ddpm", T, 1.0) if (eta == 1 and S == T) else Sampler("ddim", S, eta) for eta in etas for S in steps]
    return rows + ([Sampler("sigma_hat", S) for S in steps] if sigma_hat else [])


def live_rows(steps=(10, 20, 50, 100), ddpm: bool = True, T: int = 1000) -> list:
    """The rows of notebooks/06's live table: DDIM with eta in {0, 1} (eta = 1: "DDPM with S steps") for each S, and
    DDPM itself (all T steps, sigma_t^2 = beta_tilde_t)."""
    return [Sampler("ddim", S, eta) for eta in (0.0, 1.0) for S in steps] + ([Sampler("ddpm", T, 1.0)] if ddpm else [])


@experiment("table1")
def table1(seed: int = 0, fast: bool = False, n: int = 1000, n_seeds: int = 10, full_seeds: int = 3,
           steps=TABLE1_STEPS, etas=(0.0, 0.5, 1.0), device=None) -> dict:
    """The DDIM paper's Table 1 on the shipped digits model: FD and seconds for DDIM with eta in etas, the sigma_hat
    rows and DDPM (all T steps), S in steps. Each seed draws n codes x_T that every row shares, and FD's reference
    splits (fd_seed = the seed). The first full_seeds seeds run every row; the others the rows of notebooks/06's live
    table (live_rows) and every row of at most 20 steps (the noisiest FDs, and cheap). Every FD is also computed on the
    two halves of the codes, so the spread of an FD from n / 2 codes (the live table's size) is measured over twice as
    many independent samples as there are seeds.
    fast: n = 16, two seeds (one full), S in (2, 5), eta in (0, 1), no DDPM (the tests' smoke run).
    Returns plain JSON: {"rows": [record per row and seed, sampler_table's fields plus "seed"], ...}."""
    import os

    import torch

    net, schedule, shape, data, load = _setup(device)
    if fast:
        n, n_seeds, full_seeds, steps, etas = 16, 2, 1, (2, 5), (0.0, 1.0)
    rows = table1_rows(steps, etas, T=schedule.T)
    live = {r.label for r in live_rows([S for S in steps if S < schedule.T], schedule.T in steps, schedule.T)}
    extra = [r for r in rows if r.label in live or r.steps <= 20]
    out = {"model": "assets/digits.pt", "data": data, "n": n, "seeds": list(range(seed, seed + n_seeds)),
           "full_seeds": full_seeds, "extra_rows": [r.label for r in extra], "net": repr(net),
           "threads": torch.get_num_threads(), "load_average_start": list(load), "rows": []}
    for k, s in enumerate(out["seeds"]):
        records, _ = sampler_table(net, schedule, rows if k < full_seeds else extra, _codes(n, shape, s, net.device),
                                   data, noise_seed=1000 + s, fd_seed=s, halves=True)
        out["rows"] += [{**r, "seed": s} for r in records]
    out["load_average_end"] = list(os.getloadavg())
    return out


def table1_summary(data: dict) -> dict:
    """{label: statistics of one sampler over the seeds of a table1 result}: kind, steps, eta, calls; fd and sd (the mean
    over the seeds of the FD of n codes, and the spread of one such FD); fd_half and sd_half (the same over the 2 n_seeds
    halves of n / 2 codes: sd_half is the standard error of one FD from n / 2 codes); seconds (mean per run of n codes),
    floor and floor_sd (means). A spread from k values has k - 1 degrees of freedom."""
    import statistics

    def spread(values):
        return statistics.stdev(values) if len(values) > 1 else float("nan")

    groups: dict = {}
    for r in data["rows"]:
        groups.setdefault(r["label"], []).append(r)
    out = {}
    for label, rs in groups.items():
        fds, halves = [r["fd"] for r in rs], [h for r in rs for h in r["fd_halves"]]
        out[label] = {**{k: rs[0][k] for k in ("kind", "steps", "eta", "calls", "n")},
                      "fd": statistics.fmean(fds), "sd": spread(fds), "seeds": len(rs),
                      "fd_half": statistics.fmean(halves), "sd_half": spread(halves), "halves": len(halves),
                      "seconds": statistics.fmean(r["seconds"] for r in rs),
                      "floor": statistics.fmean(r["floor"] for r in rs), "floor_sd": statistics.fmean(r["floor_sd"] for r in rs)}
    return out


def paired_difference(data: dict, a: str, b: str, halves: bool = True) -> tuple:
    """FD(a) - FD(b) over the replicates of a table1 result in which a and b share their codes x_T and reference
    splits: the halves (n / 2 codes) or the seeds (n codes) that ran both. Returns (mean, spread of one difference,
    replicates)."""
    import statistics

    rows = {(r["label"], r["seed"]): r for r in data["rows"]}
    diffs = []
    for seed in [s for s in data["seeds"] if (a, s) in rows and (b, s) in rows]:
        ra, rb = rows[(a, seed)], rows[(b, seed)]
        diffs += [x - y for x, y in zip(ra["fd_halves"], rb["fd_halves"])] if halves else [ra["fd"] - rb["fd"]]
    return statistics.fmean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else float("nan"), len(diffs)


def grid_text(summary: dict, key: str = "fd", spread: str | None = "sd", fmt: str = "{:.1f}") -> str:
    """Table 1's layout for table1_summary: a line per eta and one for sigma_hat, a column per S; each entry summary[label][key]
    (+- summary[label][spread]); eta = 1 at S = T is DDPM (all T steps)."""
    steps = sorted({v["steps"] for v in summary.values()})
    lines = {}
    for label, v in summary.items():
        name = "sigma_hat" if v["kind"] == "sigma_hat" else f"eta = {v['eta']:g}"
        entry = fmt.format(v[key]) + (f" +- {fmt.format(v[spread])}" if spread else "")
        lines.setdefault(name, {})[v["steps"]] = entry + (" (DDPM)" if v["kind"] == "ddpm" else "")
    width = max([len(e) for row in lines.values() for e in row.values()] + [len(f"S = {max(steps)}")]) + 2
    head = f"{'':12s}" + "".join(f"{'S = ' + str(S):>{width}s}" for S in steps)
    return "\n".join([head] + [f"{name:12s}" + "".join(f"{row.get(S, '-'):>{width}s}" for S in steps)
                               for name, row in lines.items()])


