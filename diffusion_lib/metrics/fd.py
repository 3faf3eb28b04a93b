"""Sample quality: the Frechet distance (FD) in a small classifier's features, with its floor.

FD: fit one Gaussian to the features of generated images and one to those of real images; the
Frechet distance between them is the FID of Heusel et al. 2017, with Inception replaced by the
small CNN of classifier.py, trained on the same data set. FD is biased upwards at finite sample
size, so `fd_with_floor` reports beside it the FD that real images themselves get under the same
sample size and reference: the floor a perfect model would reach.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..data import ImageSet, load_dataset
from ..utils.validate import check_finite, check_tensor
from .classifier import feature_classifier, image_features


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


