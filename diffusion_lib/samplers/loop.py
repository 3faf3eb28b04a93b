"""What every sampling loop shares: where to run, the starting noise, calling the model safely."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..utils.validate import check_finite, check_tensor


def resolve_device(model, x_T, device, generator) -> torch.device:
    """The device to sample on: x_T's, else `device`, else the model's parameters', else the
    generator's, else the CPU. Raises if the generator lives on another device."""
    if x_T is not None:
        chosen = x_T.device
    elif device is not None:
        chosen = torch.device(device)
    elif isinstance(model, torch.nn.Module) and any(True for _ in model.parameters()):
        chosen = next(model.parameters()).device
    elif generator is not None:
        chosen = generator.device
    else:
        chosen = torch.device("cpu")
    if generator is not None and generator.device.type != chosen.type:
        raise ValueError(f"the generator lives on {generator.device} but sampling runs on {chosen}; "
                         f"create it with torch.Generator(device='{chosen.type}')")
    return chosen


def start_noise(shape, x_T, generator, device) -> torch.Tensor:
    """x_T ~ N(0, I) of `shape` (float32), or a checked copy of the given x_T."""
    if x_T is None:
        if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 1 or \
                not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"shape must be a tuple of positive ints such as (B, C, H, W), got {shape!r}")
        return torch.randn(tuple(shape), generator=generator, device=device)
    check_tensor(x_T, "x_T")
    if shape is not None and tuple(shape) != tuple(x_T.shape):
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was asked for")
    check_finite(x_T, "x_T")
    return x_T.clone()


def call_model(model, x: torch.Tensor, t: int) -> torch.Tensor:
    """eps_hat = model(x_t, t) with t as a LongTensor (B,); checks its shape and finiteness."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    eps_hat = model(x, t_batch)
    if not isinstance(eps_hat, torch.Tensor) or eps_hat.shape != x.shape:
        got = tuple(eps_hat.shape) if isinstance(eps_hat, torch.Tensor) else type(eps_hat).__name__
        raise ValueError(f"the model must return eps_hat with the shape of x_t {tuple(x.shape)}, "
                         f"got {got} at t={t}")
    if not bool(torch.isfinite(eps_hat).all()):
        raise ValueError(f"the model returned NaN or infinite values at t={t}; sampling stopped")
    return eps_hat.to(x.dtype)


def steps_bar(iterable, progress: bool, desc: str):
    """A tqdm progress bar over the sampling steps when `progress` is true."""
    return tqdm(iterable, desc=desc, leave=False) if progress else iterable
