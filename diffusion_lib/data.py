"""Data sets of the course: handwritten digits offline by default, MNIST and Fashion-MNIST
opt-in, photographs for the sliders.

All images come out as float32 tensors (N, C, H, W) in [-1, 1], the scale DDPM uses (sec. 3.3):
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


def to_unit_range(pixels: np.ndarray, levels: int) -> torch.Tensor:
    """Integer grey levels 0..levels-1 to float32 in [-1, 1]: 2 k / (levels - 1) - 1."""
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) * (2.0 / (levels - 1)) - 1.0)


def load_digits(split: str = "train") -> ImageSet:
    """scikit-learn's handwritten digits: 1,797 images, 8x8, 17 grey levels (0..16), offline.

    Split without randomness: every sixth image (index % 6 == 5) is held out as "test"
    (299 images), the other 1,498 are "train"; "all" gives all 1,797.
    Alpaydin & Kaynak 1998, UCI "Optical Recognition of Handwritten Digits".
    """
    from sklearn.datasets import load_digits as _sk_digits

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    raw = _sk_digits()
    pixels = raw.images.astype(np.int64)                 # (1797, 8, 8) in 0..16
    labels = raw.target.astype(np.int64)
    held_out = np.arange(len(pixels)) % 6 == 5
    keep = {"train": ~held_out, "test": held_out, "all": np.ones_like(held_out)}[split]
    images = to_unit_range(pixels[keep], 17).unsqueeze(1)
    return ImageSet("digits", split, images, torch.from_numpy(labels[keep]), levels=17)


PHOTOS = ("grace_hopper", "china", "flower")


def load_photo(name: str = "grace_hopper", size: int = 64) -> torch.Tensor:
    """A real photograph shipped with matplotlib or scikit-learn, as (3, size, size) in [-1, 1].

    "grace_hopper" (matplotlib's sample data), "china" and "flower" (scikit-learn).
    Centre-cropped to a square and resized by area averaging.
    """
    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {PHOTOS}, got {name!r}")
    if name == "grace_hopper":
        import matplotlib.cbook as cbook
        import matplotlib.image as mpimg

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            img = mpimg.imread(f, format="jpg")
    else:
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)[..., :3] / 255.0).permute(2, 0, 1)
    h, w = x.shape[1:]
    s = min(h, w)
    x = x[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="area")[0]
    return x * 2 - 1


def pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Pad (N, C, H, W) images in [-1, 1] with -1 (black) to size x size, centred.

    28 -> 32 adds two pixels on each side: the 32x32 input of the DDPM U-Net (Ho et al. 2020, sec. 4).
    """
    H, W = images.shape[-2:]
    if size < max(H, W):
        raise ValueError(f"pad_to={size} is smaller than the images ({H}x{W}); it can only pad")
    top, left = (size - H) // 2, (size - W) // 2
    return torch.nn.functional.pad(images, (left, size - W - left, top, size - H - top), value=-1.0)


DATASETS = ("digits", "mnist", "fashion-mnist")


def load_dataset(name: str, split: str = "train", root=None, download: bool = False,
                 pad_to: int | None = None) -> ImageSet:
    """Load a data set of the course by name: "digits" (offline default), "mnist", "fashion-mnist".

    root: folder of the IDX files for MNIST-style sets (default: the cache, see mnist.load_mnist);
    download: fetch them once when missing, SHA-256 checked.  Only the MNIST test set at hand
    (no network)?  load_dataset("mnist", split="test", root="../shared/data/mnist") trains a demo.
    pad_to: pad with -1 to pad_to x pad_to (28x28 MNIST to 32x32).
    """
    if name == "digits":
        data = load_digits(split)
        return data if pad_to is None else ImageSet(data.name, split, pad_images(data.images, pad_to),
                                                     data.labels, data.levels)
    if name in ("mnist", "fashion-mnist"):
        from .mnist import load_mnist                        # MNIST-style IDX files, mnist.py

        return load_mnist(name, split, root, download, pad_to)
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
