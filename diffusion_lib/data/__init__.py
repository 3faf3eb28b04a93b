"""Data: the offline digits (default), MNIST and Fashion-MNIST from IDX files, photographs, and toy
laws with closed-form answers (toy.py). `load_dataset` picks a data set by name.

Within the package: images.py (the ImageSet container) <- digits.py, mnist.py <- this file.
"""
from __future__ import annotations

from .digits import PHOTOS, load_digits, load_photo
from .images import SPLITS, ImageSet, of_class, pad_images, to_unit_range
from .mnist import load_mnist

DATASETS = ("digits", "mnist", "fashion-mnist")


def load_dataset(name: str, split: str = "train", root=None, download: bool = False,
                 pad_to: int | None = None) -> ImageSet:
    """Load a data set of the course by name: "digits" (offline default), "mnist", "fashion-mnist".

    root: folder of the IDX files for MNIST-style sets (default: the cache, see mnist.load_mnist);
    download: fetch them once when missing, SHA-256 checked.  Only the MNIST test files at hand
    (no network)?  load_dataset("mnist", split="test", root=FOLDER) trains a demo on them.
    pad_to: pad with -1 to pad_to x pad_to (28x28 MNIST to 32x32).
    """
    if name == "digits":
        data = load_digits(split)
        return data if pad_to is None else ImageSet(data.name, split, pad_images(data.images, pad_to),
                                                     data.labels, data.levels)
    if name in ("mnist", "fashion-mnist"):
        return load_mnist(name, split, root, download, pad_to)
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
