"""Notebook 05: DDPM's two reverse variances, sigma_t^2 = beta_tilde_t and beta_t, on the shipped digits model."""
from __future__ import annotations

from .common import _codes, _setup
from .registry import experiment


@experiment("05_ddpm_variances")
def ddpm_variances(seed: int = 0, fast: bool = False, n: int = 1000, n_seeds: int = 2, device=None) -> dict:
    """DDPM (all T steps, Algorithm 2) on the shipped digits model with sigma_t^2 = beta_tilde_t and with beta_t, both
    from the same n codes x_T and the same z at every step (one generator per seed): FD of each against the digits
    with its real-vs-real floor (metrics.fd_with_floor, the seed's reference splits), the fraction of pixels outside
    [-1, 1], and the seconds per run. Seeds seed .. seed + n_seeds - 1. fast: n = 16, one seed (a smoke run).
    notebooks/05, sec. 1.1 (the live run there has a few hundred samples)."""
    import os
    import time

    import torch

    from ...metrics.fd import fd_with_floor
    from ...samplers.ddpm import ddpm_sample

    net, schedule, shape, data, load = _setup(device)
    if fast:
        n, n_seeds = 16, 1
    out = {"model": "assets/digits.pt", "data": data, "n": n, "seeds": list(range(seed, seed + n_seeds)),
           "net": repr(net), "threads": torch.get_num_threads(), "load_average_start": list(load), "rows": []}
    for s in out["seeds"]:
        x_T = _codes(n, shape, s, net.device)
        for variance in ("beta_tilde", "beta"):
            start = time.perf_counter()
            x = ddpm_sample(net, None, schedule, x_T=x_T, variance=variance,
                            generator=torch.Generator(x_T.device).manual_seed(1000 + s)).float().cpu()
            seconds = time.perf_counter() - start
            score = fd_with_floor(x.clamp(-1, 1), data, seed=s)
            out["rows"].append({"seed": s, "variance": variance, "seconds": seconds, "fd": score["fd"],
                                "floor": score["floor"], "floor_sd": score["floor_sd"], "n": score["n"],
                                "outside": float((x.abs() > 1).double().mean())})
    out["load_average_end"] = list(os.getloadavg())
    return out
