"""Sample quality and likelihood: Frechet distance in a small classifier's features, bits/dim.

FD: fit one Gaussian to the features of generated images and one to those of real images; the
Frechet distance between them is the FID of Heusel et al. 2017, with Inception (which knows
nothing of 8x8 digits) replaced by a small CNN trained here on the same data set. FD is biased
upwards at finite sample size, so `fd_with_floor` reports beside it the FD that real images
themselves get under the same sample size and reference: the floor a perfect model would reach.
Bits/dim: the negative ELBO (DDPM eq. 5) per dimension, in bits. notebooks/05, sec. 6 (bits/dim).

The shipped digits classifier assets/digits_classifier.pt (weights only, 296 kB) comes from
    python -m diffusion_lib.metrics --train-classifier digits --out assets/digits_classifier.pt
(720 steps = 30 epochs on the 1,498 train digits, seed 0, one CPU thread, 13-17 s): accuracy on
the held-out digits test split 97.3 % (291 of 299), as that command prints; reruns give the
same bits. MNIST's classifier is trained on first use (1,500 steps) and cached.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._checks import check_finite, check_tensor
from .data import ImageSet, load_dataset, load_digits
from .mnist import data_home
from .devices import pick_device
from .elbo import bits_per_dim, elbo_terms

ASSETS = Path(__file__).resolve().parents[1] / "assets"
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


def _save(checkpoint: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    torch.save(checkpoint, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)                              # atomic: never a half-written file


def feature_classifier(name: str = "digits", device=None, root=None) -> FeatureNet:
    """The feature network of data set `name`, in eval mode on `device` (default: pick_device).

    The shipped assets/<name>_classifier.pt, else the cached data_home(name)/classifier.pt, else
    trained now with build_classifier (seconds for digits, a minute or two for MNIST) and cached.
    """
    paths = [ASSETS / f"{name}_classifier.pt", data_home(name) / "classifier.pt"]
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        path = paths[1]
        _save(build_classifier(name, root=root), path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    net = FeatureNet(checkpoint["image_size"])
    net.load_state_dict(checkpoint["state_dict"])
    return net.to(pick_device(device)).eval()


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0, None))) @ V.T


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (n_a, d) and (n_b, d).

    FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})      (S: sample covariances)
    Dowson & Landau 1982; the FID formula of Heusel et al. 2017.  In float64, with
    Tr (S_a S_b)^{1/2} = sum sqrt(eig(S_a^{1/2} S_b S_a^{1/2})), a symmetric PSD matrix with the
    eigenvalues of S_a S_b: no complex matrix square root, no imaginary parts to drop.
    """
    a, b = (np.asarray(torch.as_tensor(f).detach().cpu(), dtype=np.float64) for f in (feats_a, feats_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"expected two feature sets (n, d) with n >= 2 and equal d, got "
                         f"{a.shape} and {b.shape}")
    S_a, S_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _psd_sqrt(S_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ S_b @ root_a), 0, None)).sum()
    fd = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(S_a) + np.trace(S_b) - 2 * cross
    return max(float(fd), 0.0)                         # FD >= 0; clip rounding below zero


def fd_with_floor(samples, dataset, seed: int = 0, device=None, draws: int = 10, root=None) -> dict:
    """FD of generated samples against real images, and the real-vs-real floor at the same n.

    dataset: an ImageSet (the real pool, M images) or a name ("digits": all 1,797 images;
    "mnist", "fashion-mnist": the test split, from `root`). Features: feature_classifier(name).
    n = min(N, floor(0.6 M)) images take part (a seeded subset of the N samples when N > n).
    Draw k splits the pool by the k-th torch.randperm(M) of a Generator seeded with `seed` into
    n "held" and M - n "reference" images, disjoint, and computes FD(n samples, reference) and
    FD(held, reference): the same reference, the same n, so the same finite-sample bias.  fd and floor are the means over the
    draws; the floor is what real images get, the score of a perfect model.  floor_sd, the
    spread (std) of the single-draw floors, is the noise of one FD at this n: an fd within about
    2 floor_sd of the floor cannot be told from real data.
    Returns {"fd", "floor", "floor_sd", "n", "n_reference", "draws"}.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    real = dataset if isinstance(dataset, ImageSet) else \
        load_dataset(dataset, "all" if dataset == "digits" else "test", root)
    samples = torch.as_tensor(samples)
    check_tensor(samples, "samples")
    check_finite(samples, "samples")
    if samples.ndim != 4 or tuple(samples.shape[1:]) != real.shape or len(samples) < 2:
        raise ValueError(f"samples must be (N >= 2, {', '.join(map(str, real.shape))}) like the "
                         f"{real.name} images, got {tuple(samples.shape)}; for padded samples pass "
                         f"the data set loaded with the same pad_to")
    net = feature_classifier(real.name, device or samples.device, root)
    f_real, f_gen = image_features(net, real.images), image_features(net, samples)
    M = len(real)
    n = min(len(samples), int(0.6 * M))
    g = torch.Generator().manual_seed(seed)
    splits = [torch.randperm(M, generator=g) for _ in range(draws)]   # held [:n], reference [n:]
    picks = [torch.randperm(len(f_gen), generator=g)[:n] for _ in range(draws)]
    fds = [frechet_distance(f_gen[p], f_real[s[n:]]) for s, p in zip(splits, picks)]
    floors = [frechet_distance(f_real[s[:n]], f_real[s[n:]]) for s in splits]
    return {"fd": float(np.mean(fds)), "floor": float(np.mean(floors)),
            "floor_sd": float(np.std(floors, ddof=1)) if draws > 1 else math.nan, "n": n, "n_reference": M - n, "draws": draws}


@torch.no_grad()
def bits_per_dim_of(eps_model, images: torch.Tensor, schedule, levels, generator=None,
                    batch_size: int = 256, variance: str = "beta_tilde") -> tuple[float, float]:
    """Negative ELBO in bits/dim, mean over images and its standard error: (mean, se).

    bpd(x_0) = (L_0 + sum_{t=2}^T L_{t-1} + L_T) / (D ln 2), the terms from elbo_terms
    (DDPM eq. 5, decoder eq. 13 with `levels` grey levels: 17 digits, 256 MNIST; None for
    continuous toy data), sigma_t^2 = beta_tilde_t or beta_t (`variance`). One noise draw per
    image and t, from `generator` (on the images' device); se = std / sqrt(N) over images.
    images: (N, ...) in [-1, 1]; put a model in eval mode first. Costs T model calls per batch.
    notebooks/05, sec. 6 (bits/dim).
    """
    check_tensor(images, "images", min_ndim=2)
    if len(images) < 2:
        raise ValueError(f"need at least 2 images for a standard error, got {len(images)}")
    dims = images[0].numel()
    bpd = torch.cat([bits_per_dim(elbo_terms(eps_model, batch, schedule, generator, variance, levels)
                                  .sum(dim=1), dims) for batch in images.split(batch_size)])
    bpd = bpd.cpu().double()                           # MPS has no float64
    return float(bpd.mean()), float(bpd.std() / math.sqrt(len(bpd)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train a feature classifier for FD.")
    parser.add_argument("--train-classifier", required=True, choices=sorted(STEPS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", default=None, help="folder of the IDX files (MNIST-style sets)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: same bits every run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    checkpoint = build_classifier(args.train_classifier, args.seed, args.device, args.root)
    _save(checkpoint, args.out)
    print(f"{args.train_classifier}: trained on {checkpoint['trained_on']} in "
          f"{time.perf_counter() - start:.1f} s; accuracy on {checkpoint['held_out']}: "
          f"{100 * checkpoint['held_out_accuracy']:.1f} %; saved to {args.out}")


if __name__ == "__main__":
    main()
