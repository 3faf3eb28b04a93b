"""The container every image data set of the course comes in, and the two conversions it needs.

All images are float32 tensors (N, C, H, W) in [-1, 1], the scale DDPM uses (sec. 3.3):
a grey level k of a source with L levels maps to 2 k / (L - 1) - 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPLITS = ("train", "test", "all")


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images and labels of one split of a data set.

    images: (N, C, H, W) float32 in [-1, 1], on the grid of `levels` values;
    labels: (N,) int64;  levels: grey levels of the source (17 for digits, 256 for MNIST).
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    levels: int

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])


def of_class(data: ImageSet, label: int) -> ImageSet:
    """The images of `data` whose label is `label` (an ImageSet with split "<split>, label <label>")."""
    keep = data.labels == label
    if not bool(keep.any()):
        raise ValueError(f"{data.name} ({data.split}) holds no image with label {label}")
    return ImageSet(data.name, f"{data.split}, label {label}", data.images[keep], data.labels[keep], data.levels)


def to_unit_range(pixels: np.ndarray, levels: int) -> torch.Tensor:
    """Integer grey levels 0..levels-1 to float32 in [-1, 1]: 2 k / (levels - 1) - 1."""
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) * (2.0 / (levels - 1)) - 1.0)


def pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Pad (N, C, H, W) images in [-1, 1] with -1 (black) to size x size, centred.

    28 -> 32 adds two pixels on each side: the 32x32 input of the DDPM U-Net (Ho et al. 2020, sec. 4).
    """
    H, W = images.shape[-2:]
    if size < max(H, W):
        raise ValueError(f"pad_to={size} is smaller than the images ({H}x{W}); it can only pad")
    top, left = (size - H) // 2, (size - W) // 2
    return torch.nn.functional.pad(images, (left, size - W - left, top, size - H - top), value=-1.0)
