"""Choosing where to run: CUDA, then Apple's MPS, then the CPU; the one device picker."""
from __future__ import annotations

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or the best available one: "cuda", then "mps", then "cpu".

    A device that is asked for but not available raises ValueError naming what is.
    """
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu'")
        if device.type == "mps" and not _mps_available():
            raise ValueError("device 'mps' was asked for but MPS is not available; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
