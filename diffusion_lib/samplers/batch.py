"""Many samples in batches, from one seeded generator: what the command line, the notebooks and the
benchmarks use to draw 1,000 digits for a metric."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..model.fast import FastModel, fast_model
from .ddim import ddim_sample
from .ddpm import ddpm_sample


def sample_images(model, schedule, shape, n: int, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
                  seed: int = 0, batch_size: int = 500, progress: bool = True, fast: bool = True) -> torch.Tensor:
    """n samples (n, *shape) float32 on the CPU, clamped to [-1, 1], drawn in batches with the library's
    ddim_sample / ddpm_sample from one generator seeded with `seed` on the model's device.
    fast: call the model through model.fast.fast_model (its per-device defaults: on the CPU the
    same numbers; on CUDA CUDA graphs and bf16); `model` may also be a FastModel already."""
    if isinstance(model, FastModel):               # already wrapped (keeps its CUDA graphs across calls)
        device = model.device
    else:
        device = next(model.parameters()).device
        model = fast_model(model) if fast else model
    generator = torch.Generator(device).manual_seed(seed)
    out = []
    for b in tqdm(range(0, n, batch_size), desc=f"{sampler} batches", disable=not progress):
        size = (min(batch_size, n - b), *shape)
        if sampler == "ddim":
            x = ddim_sample(model, size, schedule, steps=steps, eta=eta, generator=generator, progress=progress)
        else:
            x = ddpm_sample(model, size, schedule, generator=generator, progress=progress)
        out.append(x.clamp(-1, 1).float().cpu())
    return torch.cat(out)
