"""Classifier-free guidance's trade-off, measured on the conditional digits model (notebooks/09, sec. 5).

For each guidance weight w, class-balanced samples from the same codes x_T with deterministic DDIM and
guided(model, y, w) (Ho & Salimans 2022, eq. 6), scored three ways:
- quality: the FD of each class's samples against the real digits of that class, with its real-vs-real
  floor (metrics.fd_with_floor), averaged over the classes (Ho & Salimans, Fig. 4 plots FID against IS);
- fidelity to the label: the share that the digits classifier reads as the label asked for;
- diversity: the per-class pixel variance (the mean over pixels of the variance over a class's samples).

`guidance_tradeoff(seed, fast)` is the experiment behind the notebook's table, registered as
`python -m diffusion_lib results 09_guidance_tradeoff --out FILE`; the notebook runs it live (it fits
the class-time budget), so no results file is shipped for it.
"""
from __future__ import annotations

import torch

from ...data import ImageSet, load_dataset, of_class
from ...metrics import classify, fd_with_floor, feature_classifier
from ...samplers.ddim import ddim_sample
from ...samplers.guidance import guided
from ...samplers.thresholding import thresholded

from .registry import experiment

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)        # the w of notebooks/09, sec. 5


def class_balanced(per_class: int, num_classes: int = 10) -> torch.Tensor:
    """Labels 0, .., 0, 1, .., 1, ...: per_class of each class, in label order. LongTensor (per_class * C,)."""
    return torch.arange(num_classes).repeat_interleave(per_class)


@torch.no_grad()
def guided_digits(model, schedule, labels: torch.Tensor, w: float, x_T: torch.Tensor, steps: int = 50,
                  interval=None, threshold: float | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0, `steps` steps) from x_T with guided(model, labels, w, interval); clamped
    to [-1, 1], on the CPU. The same x_T for every w makes the weights comparable code by code.
    threshold: a percentile p: thresholded(guided(...), schedule, p), Imagen's dynamic thresholding."""
    eps_model = guided(model, labels, w, interval)
    if threshold is not None:
        eps_model = thresholded(eps_model, schedule, threshold)
    return ddim_sample(eps_model, None, schedule, steps=steps, x_T=x_T).clamp(-1, 1).cpu()


def score(samples: torch.Tensor, labels: torch.Tensor, real: ImageSet, net, seed: int = 0) -> dict:
    """FD per class with its floor, classifier accuracy and per-class pixel variance of labelled samples.

    samples: (N, 1, H, W) in [-1, 1];  labels: (N,);  real: the real images with their labels.
    Returns plain JSON values: fd, floor (means over classes), fd_by_class, floor_by_class,
    accuracy with its binomial s.e., pixel_var (mean over classes) and pixel_var_by_class.
    """
    classes = sorted(set(labels.tolist()))
    fds = [fd_with_floor(samples[labels == c], of_class(real, c), seed=seed) for c in classes]
    hit = (classify(net, samples) == labels).double()
    var = [float(samples[labels == c].var(0).mean()) for c in classes]
    return {"fd": sum(f["fd"] for f in fds) / len(fds), "floor": sum(f["floor"] for f in fds) / len(fds),
            "fd_by_class": [f["fd"] for f in fds], "floor_by_class": [f["floor"] for f in fds],
            "n_per_class": fds[0]["n"], "accuracy": float(hit.mean()),
            "accuracy_se": float(hit.std() / len(hit) ** 0.5), "pixel_var": sum(var) / len(var),
            "pixel_var_by_class": var}


def tradeoff(model, schedule, weights=WEIGHTS, per_class: int = 100, steps: int = 50, seed: int = 0,
             real: ImageSet | None = None, keep_samples: bool = False, interval=None,
             threshold: float | None = None) -> dict:
    """score() of guided samples for every w in `weights`, from one set of class-balanced codes.

    Returns {"weights", "per_class", "steps", "rows": [score() per w], "real_pixel_var_by_class"}, and with
    keep_samples also "labels" (N,) and "samples" {w: (N, 1, H, W)} (tensors, not JSON).
    real: the digits to compare with (default: all 1,797 digits).  interval: guide only for t in
    (t_lo, t_hi), conditional elsewhere (guided's interval; Kynkaanniemi et al. 2024).  threshold: a
    percentile p for dynamic thresholding at every step (thresholded; Saharia et al. 2022, sec. 2.3).
    """
    device = next(model.parameters()).device
    real = real if real is not None else load_dataset("digits", "all")
    net = feature_classifier(real.name, device=device)
    labels = class_balanced(per_class, model.config.num_classes)
    x_T = torch.randn(len(labels), *real.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    samples = {w: guided_digits(model, schedule, labels.to(device), w, x_T, steps, interval, threshold)
               for w in weights}
    rows = [score(samples[w], labels, real, net, seed) for w in weights]
    real_var = [float(of_class(real, c).images.var(0).mean()) for c in range(model.config.num_classes)]
    kept = {"labels": labels, "samples": samples} if keep_samples else {}
    return {"weights": list(weights), "per_class": per_class, "steps": steps, "rows": rows, "interval": interval,
            "threshold": threshold,
            "real_pixel_var_by_class": real_var, **kept}


@experiment("09_guidance_tradeoff")
def guidance_tradeoff(seed: int = 0, fast: bool = False) -> dict:
    """The experiment of notebooks/09, sec. 5 on the shipped assets/digits_cond.pt: w in WEIGHTS, DDIM-50,
    100 samples per class (fast: w in {0, 2, 8}, DDIM-10, 20 per class). On the CPU, one thread's worth."""
    from ..assets import shipped_model

    model, schedule, _ = shipped_model("digits_cond.pt", device="cpu")
    if fast:
        return tradeoff(model, schedule, (0.0, 2.0, 8.0), per_class=20, steps=10, seed=seed)
    return tradeoff(model, schedule, WEIGHTS, per_class=100, steps=50, seed=seed)
