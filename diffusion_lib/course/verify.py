"""Numerical checks that print what they compare: measured value, true value, tolerance.

Every derivation in the notebooks ends with one of these. A check that fails raises
AssertionError, so a notebook with a wrong formula stops there, and the test suite, which runs
every notebook, fails with it.
"""
from __future__ import annotations

import math

import torch


def _as_float(x) -> float:
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"expected a single number, got a tensor of shape {tuple(x.shape)}")
        return float(x.detach().cpu())
    return float(x)


def close(label: str, measured, expected, tol: float, relative: bool = False) -> float:
    """Check |measured - expected| <= tol (or <= tol * |expected| when relative); print the line.

    For tensors, the largest elementwise error is compared. Returns the error.
    """
    m = torch.as_tensor(measured, dtype=torch.float64)
    e = torch.as_tensor(expected, dtype=torch.float64)
    if m.shape != e.shape and m.numel() != 1 and e.numel() != 1:
        raise ValueError(f"{label}: measured shape {tuple(m.shape)} and expected shape "
                         f"{tuple(e.shape)} differ")
    diff = (m - e).abs()
    err = float((diff / e.abs().clamp(min=1e-300)).max()) if relative else float(diff.max())
    kind = "relative error" if relative else "max |error|"
    shown = (f"measured {float(m):.6g}, true {float(e):.6g}" if m.numel() == 1 and e.numel() == 1
             else f"{m.numel()} values")
    ok = err <= tol
    print(f"{'PASS' if ok else 'FAIL'}  {label}: {shown}, {kind} {err:.3g} (tolerance {tol:.3g})")
    if not ok:
        raise AssertionError(f"{label}: {kind} {err:.3g} exceeds the tolerance {tol:.3g}")
    return err


def within_se(label: str, measured, expected, se, k: float = 4.0) -> float:
    """Check a Monte Carlo estimate: |measured - expected| <= k standard errors; print the line.

    k = 4 gives a false-failure rate of 6.3e-5 per check for a Gaussian estimator (two-sided).
    Returns the z-score (measured - expected) / se.
    """
    m, e, s = _as_float(measured), _as_float(expected), _as_float(se)
    if not s > 0:
        raise ValueError(f"{label}: the standard error must be positive, got {s}")
    z = (m - e) / s
    ok = abs(z) <= k
    print(f"{'PASS' if ok else 'FAIL'}  {label}: measured {m:.6g} +- {s:.2g} (1 s.e.), true {e:.6g}, "
          f"z = {z:+.2f} (tolerance {k:g} s.e.)")
    if not ok:
        raise AssertionError(f"{label}: {abs(z):.2f} standard errors from the true value (allowed {k:g})")
    return z


def false_failure_rate(k: float) -> float:
    """Two-sided probability that a Gaussian estimate lies more than k standard errors out."""
    return math.erfc(k / math.sqrt(2))
