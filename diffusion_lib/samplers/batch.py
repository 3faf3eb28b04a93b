"""Many samples in batches, from one seeded generator: what the command line, the notebooks and the
benchmarks use to draw 1,000 digits for a metric."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..model.fast import FastModel, fast_model
from .ddim import ddim_sample
from .ddpm import ddpm_sample
from .dpm_solver import dpm_solver_sample
from .guidance import guided, num_classes_of, unconditional
from .thresholding import thresholded


def sample_images(model, schedule, shape, n: int, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
                  seed: int = 0, batch_size: int = 500, progress: bool = True, fast: bool = True,
                  order: int = 2, labels: torch.Tensor | None = None, guidance: float = 0.0,
                  guidance_interval=None, threshold: float | None = None) -> torch.Tensor:
    """n samples (n, *shape) float32 on the CPU, clamped to [-1, 1], drawn in batches with the library's
    ddim_sample / ddpm_sample / dpm_solver_sample (sampler "dpm", `steps` calls, DPM-Solver++ of `order`)
    from one generator seeded with `seed` on the model's device.
    fast: call the model through model.fast.fast_model (its per-device defaults: on the CPU the
    same numbers; on CUDA CUDA graphs and bf16); `model` may also be a FastModel already.
    labels: LongTensor (n,), the class of each sample, for a class-conditional model, sampled with
    guided(model, labels, guidance) (samplers/guidance.py); None: an unconditional model as it is, a
    conditional one with its null label (no class, no guidance). guidance_interval: (t_lo, t_hi), guide only
    there (guided's interval). threshold: a percentile p in (0, 100] for Imagen's dynamic thresholding of
    x0_hat at every step (thresholded(eps_model, schedule, p); samplers/thresholding.py); None: none."""
    if isinstance(model, FastModel):               # already wrapped (keeps its CUDA graphs across calls)
        device = model.device
    else:
        device = next(model.parameters()).device
        model = fast_model(model) if fast else model
    generator = torch.Generator(device).manual_seed(seed)
    out = []
    for b in tqdm(range(0, n, batch_size), desc=f"{sampler} batches", disable=not progress):
        size = (min(batch_size, n - b), *shape)
        eps_model = _with_labels(model, labels, guidance, n, b, size[0], guidance_interval)
        if threshold is not None:
            eps_model = thresholded(eps_model, schedule, threshold)
        if sampler == "ddim":
            x = ddim_sample(eps_model, size, schedule, steps=steps, eta=eta, generator=generator, progress=progress)
        elif sampler == "dpm":
            x = dpm_solver_sample(eps_model, size, schedule, steps=steps, order=order, generator=generator,
                                  progress=progress)
        else:
            x = ddpm_sample(eps_model, size, schedule, generator=generator, progress=progress)
        out.append(x.clamp(-1, 1).float().cpu())
    return torch.cat(out)


def _with_labels(model, labels, guidance: float, n: int, start: int, size: int, interval=None):
    """The (x_t, t) -> eps callable for samples start..start+size-1 (see sample_images' labels)."""
    if labels is None:
        if guidance != 0:
            raise ValueError(f"guidance = {guidance} needs labels: the class of each sample")
        return unconditional(model) if num_classes_of(model) else model
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per sample, got {tuple(labels.shape)}")
    return guided(model, labels[start:start + size], guidance, interval)
