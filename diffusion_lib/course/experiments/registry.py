"""The registry of the course's experiments: `python -m diffusion_lib results NAME` runs EXPERIMENTS[NAME]."""
from __future__ import annotations

EXPERIMENTS: dict = {}


def experiment(name: str):
    """Register a function under `name` for `python -m diffusion_lib results NAME`."""
    def register(fn):
        if name in EXPERIMENTS:
            raise ValueError(f"an experiment named {name!r} is registered already")
        EXPERIMENTS[name] = fn
        return fn
    return register


def run_experiment(name: str, seed: int = 0, fast: bool = False) -> dict:
    """Run a registered experiment; ValueError names the known ones for an unknown name."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS)) or 'none'}")
    return EXPERIMENTS[name](seed=seed, fast=fast)
