"""Notebook 06, sec. 6: clipping x0_hat to [-1, 1] at every step, and what it costs."""
from __future__ import annotations

from .common import Sampler, _codes, _setup, black_fraction, draw, image_rmse
from .registry import experiment


def clipping_study(net, schedule, steps, x_T, data: str, fd: bool = True) -> list:
    """Deterministic DDIM (eta = 0) from the codes x_T with and without clipping x0_hat, per S in steps
    (notebooks/06, sec. 6.2): FD of each variant (if fd), the mean per-image RMSE of each clipped variant to the
    unclipped sample, the black fractions, and how much clipping keeping eps lifts the pixels that are black
    without clipping. Returns one record per S; the samples are not kept."""
    from ...metrics.fd import fd_with_floor

    out = []
    for S in steps:
        x = {clip: draw(net, schedule, Sampler("ddim", S, 0.0, clip), x_T) for clip in ("none", "keep_eps", "rederive_eps")}
        black = x["none"] <= -0.999
        record = {"steps": S, "n": len(x_T), "rmse": {k: float(image_rmse(x["none"], v).mean()) for k, v in x.items()},
                  "black": {k: black_fraction(v) for k, v in x.items()},
                  "lift": float((x["keep_eps"] - x["none"])[black].mean()) if bool(black.any()) else float("nan")}
        if fd:
            scores = {k: fd_with_floor(v, data, seed=0) for k, v in x.items()}
            record.update(fd={k: v["fd"] for k, v in scores.items()}, floor=scores["none"]["floor"],
                          floor_sd=scores["none"]["floor_sd"])
        out.append(record)
    return out


@experiment("clipping")
def clipping(seed: int = 0, fast: bool = False, n: int = 1000, steps=(10, 20, 50, 100, 200, 1000), device=None) -> dict:
    """Clipping x0_hat in deterministic DDIM on the shipped digits model (clipping_study): n codes x_T from `seed`,
    the same for every S and variant. fast: n = 16, S in (2, 5)."""
    import os

    net, schedule, shape, data, load = _setup(device)
    if fast:
        n, steps = 16, (2, 5)
    records = clipping_study(net, schedule, steps, _codes(n, shape, seed, net.device), data)
    return {"model": "assets/digits.pt", "data": data, "n": n, "seed": seed, "net": repr(net),
            "load_average_start": list(load), "load_average_end": list(os.getloadavg()),
            "steps": list(steps), "records": records}


