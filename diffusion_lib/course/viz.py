"""Pictures: the one image-grid function and a plotting helper for notebooks."""
from __future__ import annotations

import numpy as np
import torch


def image_grid(x, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images into one array for imshow.

    x: (B, C, H, W) tensor or array in [-1, 1], C = 1 or 3.  nrow: images per row
    (default ~sqrt(B)).  Returns (rows*(H+pad)-pad, nrow*(W+pad)-pad) for C = 1 or (..., 3) for
    C = 3, in [0, 1], padding white.
    """
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"image_grid expects (B, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    B, C, H, W = x.shape
    nrow = nrow or max(1, int(np.ceil(np.sqrt(B))))
    rows = int(np.ceil(B / nrow))
    grid = torch.ones(C, rows * (H + pad) - pad, nrow * (W + pad) - pad)
    img = ((x.clamp(-1, 1) + 1) / 2)
    for i in range(B):
        r, c = divmod(i, nrow)
        grid[:, r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = img[i]
    grid = grid.permute(1, 2, 0).numpy()
    return grid[..., 0] if C == 1 else grid


def show_images(x, nrow: int | None = None, title: str | None = None, ax=None):
    """Draw image_grid(x) on a matplotlib axis (a new figure if none); returns the axis."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    grid = image_grid(x, nrow)
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
