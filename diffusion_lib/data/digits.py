"""Data that ships with the course's dependencies, offline: scikit-learn's handwritten digits (the
default training set) and the photographs of matplotlib and scikit-learn (for the noise sliders).
"""
from __future__ import annotations

import numpy as np
import torch

from .images import SPLITS, ImageSet, to_unit_range


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
