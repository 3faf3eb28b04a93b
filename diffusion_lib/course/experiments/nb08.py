"""Notebook 08: sample quality against network calls, DDIM and DPM-Solver++(2M), on the shipped digits model."""
from __future__ import annotations

from .registry import experiment


CALLS_08 = (5, 10, 15, 20, 50)


@experiment("08_fd_calls")
def fd_against_calls(seed: int = 0, fast: bool = False, n_seeds: int = 5, n: int = 1000, calls=CALLS_08,
                     ddpm: bool = True, device=None) -> dict:
    """FD against network calls on the shipped digits model: DDIM (eta = 0), DPM-Solver++(2M) on DDIM's grid and
    on the log-SNR grid, each run from the same n codes x_T within a seed; DDPM-1000 (1,000 calls) as a reference.

    Seeds seed .. seed + n_seeds - 1 draw x_T and pick the FD's reference splits (metrics.fd_with_floor), so one
    seed's runs are paired. fast: n = 200, one seed, 5 and 10 calls, no DDPM (the tests' smoke run).
    Returns plain JSON: fd[sampler][i][k] for calls[i] and the k-th seed; floor and floor_sd per seed; seconds.
    notebooks/08, sec. 6; benchmarks/dpm_solver.py prints the table.
    """
    import time

    import torch

    from ...metrics.fd import fd_with_floor
    from ...model.fast import fast_model
    from ...samplers.ddim import ddim_sample
    from ...samplers.ddpm import ddpm_sample
    from ...samplers.dpm_solver import dpm_solver_sample, logsnr_timesteps
    from ..assets import shipped_model

    if fast:
        n_seeds, n, calls, ddpm = 1, 200, (5, 10), False
    model, schedule, info = shipped_model("digits.pt", device=device)
    net, shape, name = fast_model(model), tuple(info["data"]["shape"]), info["data"]["name"]
    samplers = {"DDIM": lambda S, x_T: ddim_sample(net, None, schedule, steps=S, x_T=x_T),
                "DPM-Solver++(2M)": lambda S, x_T: dpm_solver_sample(net, None, schedule, steps=S, x_T=x_T),
                "DPM-Solver++(2M), log-SNR grid": lambda S, x_T: dpm_solver_sample(
                    net, None, schedule, steps=S, x_T=x_T, timesteps=logsnr_timesteps(schedule, S))}
    seeds = list(range(seed, seed + n_seeds))
    out = {"model": "assets/digits.pt", "data": name, "n": n, "seeds": seeds, "calls": list(calls),
           "fd": {k: [[None] * len(seeds) for _ in calls] for k in samplers}, "ddpm_1000": [],
           "floor": [], "floor_sd": [], "seconds": {k: 0.0 for k in [*samplers, "DDPM-1000"]}}
    for k, s in enumerate(seeds):
        x_T = torch.randn(n, *shape, generator=torch.Generator().manual_seed(s)).to(next(model.parameters()).device)
        score = lambda x: fd_with_floor(x.clamp(-1, 1).cpu(), name, seed=s)
        for sampler, run in samplers.items():
            for i, S in enumerate(calls):
                start = time.perf_counter()
                x = run(S, x_T)
                out["seconds"][sampler] += time.perf_counter() - start
                result = score(x)
                out["fd"][sampler][i][k] = result["fd"]
        out["floor"].append(result["floor"])
        out["floor_sd"].append(result["floor_sd"])
        if ddpm:
            start = time.perf_counter()
            x = ddpm_sample(net, None, schedule, x_T=x_T, generator=torch.Generator(x_T.device).manual_seed(s))
            out["seconds"]["DDPM-1000"] += time.perf_counter() - start
            out["ddpm_1000"].append(score(x)["fd"])
    return out


