"""Input checks shared by the library: each raises at once with a message a student can act on.

Range checks on integer time steps run only for CPU tensors, where they cost nothing; on an
accelerator they would force a device synchronisation in the training loop's hot path.
"""
from __future__ import annotations

import numbers

import torch

INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_tensor(x, name: str, min_ndim: int = 1) -> torch.Tensor:
    """Raise TypeError unless `x` is a floating-point tensor with at least `min_ndim` dims."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s) (batch first), "
                         f"got shape {tuple(x.shape)}")
    return x


def check_same_shape(a: torch.Tensor, b, name_a: str, name_b: str) -> None:
    """Raise unless `b` is a tensor with the shape, dtype and device of `a`."""
    check_tensor(b, name_b)
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, "
                         f"got {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"{name_b} must have the dtype of {name_a} ({a.dtype}), got {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{name_b} must be on {name_a}'s device ({a.device}), got {b.device}")


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError if `x` holds NaN or infinity (forces a sync on accelerators)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def as_time(t, batch: int, lo: int, hi: int, device, name: str = "t") -> torch.Tensor:
    """Return time steps as a LongTensor of shape (batch,) on `device`.

    Accepts a Python int (broadcast to the batch) or an integer tensor of shape (batch,) or ().
    Values must lie in lo..hi (checked for CPU tensors and Python ints).
    """
    if isinstance(t, bool) or not isinstance(t, (numbers.Integral, torch.Tensor)):
        raise TypeError(f"{name} must be an integer time step or a LongTensor of shape ({batch},), "
                        f"got {type(t).__name__}")
    if isinstance(t, torch.Tensor):
        if t.dtype not in INT_DTYPES:
            raise TypeError(f"{name} must be an integer tensor (torch.long) with values in "
                            f"{lo}..{hi}, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.reshape(1).expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"{name} must have shape ({batch},) to match the batch, "
                             f"got {tuple(t.shape)}")
        if t.device.type == "cpu" and t.numel() and (int(t.min()) < lo or int(t.max()) > hi):
            raise ValueError(f"{name} must lie in {lo}..{hi}, got values from "
                             f"{int(t.min())} to {int(t.max())}")
        return t.to(device=device, dtype=torch.long)
    if not lo <= int(t) <= hi:
        raise ValueError(f"{name} must lie in {lo}..{hi}, got {int(t)}")
    return torch.full((batch,), int(t), dtype=torch.long, device=device)


def check_choice(value, name: str, choices) -> None:
    """Raise ValueError unless `value` is one of a small closed set."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
