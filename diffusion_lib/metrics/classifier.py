"""The feature network of the Frechet distance: a small CNN classifier trained on the data set itself.

Inception, the network of FID, knows nothing of 8x8 digits; this CNN is trained here on the same data
set, and its penultimate layer is the feature space of fd.py. The shipped digits classifier,
assets/digits_classifier.pt (weights only), is reproduced by
    python -m diffusion_lib train-classifier --data digits --out assets/digits_classifier.pt
(its accuracy on the held-out digits: README, "The shipped checkpoint"). MNIST's classifier is
trained on first use and cached in data_home(name).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..data import ImageSet, load_dataset, load_digits
from ..data.mnist import data_home
from ..utils.devices import pick_device
from ..utils.files import atomic_write

ASSETS = Path(__file__).resolve().parents[2] / "assets"
STEPS = {"digits": 720, "mnist": 1500, "fashion-mnist": 1500}    # 720 = 30 epochs of digits


class FeatureNet(nn.Module):
    """A small CNN classifier; its penultimate layer (64 units) is the feature space of FD.

    conv 3x3 1->32, conv 3x3/2 32->64, conv 3x3/2 64->64 (SiLU after each), average-pooled to
    2x2, linear 256->64 + SiLU = features, linear 64->10 = logits.  x: (B, 1, H, W) in [-1, 1];
    inputs larger than image_size (8 digits, 28 MNIST) are centre-cropped, undoing pad_to.
    """

    def __init__(self, image_size: int, feature_dim: int = 64, classes: int = 10):
        super().__init__()
        self.image_size = image_size
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, feature_dim), nn.SiLU())
        self.head = nn.Linear(feature_dim, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, feature_dim), the penultimate activations."""
        s, (H, W) = self.image_size, x.shape[-2:]
        if x.ndim != 4 or x.shape[1] != 1 or min(H, W) < s:
            raise ValueError(f"expected images (B, 1, H, W) with H, W >= {s}, got {tuple(x.shape)}")
        top, left = (H - s) // 2, (W - s) // 2
        return self.body(x[..., top:top + s, left:left + s])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def image_features(net: FeatureNet, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Penultimate activations of `net` for images (N, 1, H, W): float64 (N, feature_dim) on the CPU."""
    device = next(net.parameters()).device
    return torch.cat([net.features(b.to(device, torch.float32)).cpu().double()
                      for b in images.split(batch_size)])


@torch.no_grad()
def classify(net: FeatureNet, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The classifier's label (the argmax of its logits) for images (N, 1, H, W) in [-1, 1]: LongTensor (N,),
    on the CPU. What the command line and notebooks/09 use to ask whether a sample shows the class asked for."""
    device = next(net.parameters()).device
    return torch.cat([net(b.to(device, torch.float32)).argmax(1).cpu() for b in images.split(batch_size)])


def train_classifier(train: ImageSet, held_out: ImageSet, steps: int, seed: int = 0, device=None,
                     batch_size: int = 64, lr: float = 3e-3) -> tuple[FeatureNet, float]:
    """Train a FeatureNet on `train` for `steps` minibatches (Adam, cosine learning rate,
    cross-entropy, a seeded reshuffle each epoch).

    Returns the network in eval mode and its accuracy on `held_out`. Same seed, device and
    thread count: the same weights.
    """
    device = pick_device(device)
    with torch.random.fork_rng(devices=[]):        # seeded initialisation; global RNG untouched
        torch.manual_seed(seed)
        net = FeatureNet(train.shape[-1]).to(device)
    g = torch.Generator().manual_seed(seed)
    x, y = train.images.to(device), train.labels.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(steps):
        if step % math.ceil(len(x) / batch_size) == 0:
            batches = iter(torch.randperm(len(x), generator=g).split(batch_size))
        idx = next(batches)
        loss = nn.functional.cross_entropy(net(x[idx.to(device)]), y[idx.to(device)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(b.to(device)).argmax(1).cpu() for b in held_out.images.split(500)])
    return net, float((pred == held_out.labels).double().mean())


def classifier_data(name: str, root=None) -> tuple[ImageSet, ImageSet]:
    """(train, held_out) for the classifier of `name`: digits train/test; MNIST-style train/test,
    or, where only the test files exist, test images with index % 6 != 5 / == 5."""
    if name == "digits":
        return load_digits("train"), load_digits("test")
    try:
        return load_dataset(name, "train", root), load_dataset(name, "test", root)
    except FileNotFoundError:
        test = load_dataset(name, "test", root)
        keep = torch.arange(len(test)) % 6 != 5
        return tuple(ImageSet(name, f"test[index % 6 {op} 5]", test.images[m], test.labels[m], 256)
                     for op, m in (("!=", keep), ("==", ~keep)))


def build_classifier(name: str, seed: int = 0, device=None, root=None) -> dict:
    """Train the feature classifier of `name` and return its checkpoint (a dict of plain values)."""
    train, held_out = classifier_data(name, root)
    net, accuracy = train_classifier(train, held_out, STEPS[name], seed, device)
    return {"state_dict": {k: v.cpu() for k, v in net.state_dict().items()}, "dataset": name,
            "image_size": net.image_size, "trained_on": train.split, "steps": STEPS[name],
            "seed": seed, "held_out": held_out.split, "held_out_accuracy": accuracy}


def save_classifier(checkpoint: dict, path) -> Path:
    """Write a classifier checkpoint (build_classifier's dict) atomically."""
    return atomic_write(path, lambda f: torch.save(checkpoint, f))


def feature_classifier(name: str = "digits", device=None, root=None) -> FeatureNet:
    """The feature network of data set `name`, in eval mode on `device` (default: pick_device).

    The shipped assets/<name>_classifier.pt, else the cached data_home(name)/classifier.pt, else
    trained now with build_classifier (STEPS[name] minibatches, once) and cached.
    """
    paths = [ASSETS / f"{name}_classifier.pt", data_home(name) / "classifier.pt"]
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        path = paths[1]
        save_classifier(build_classifier(name, root=root), path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    net = FeatureNet(checkpoint["image_size"])
    net.load_state_dict(checkpoint["state_dict"])
    return net.to(pick_device(device)).eval()


