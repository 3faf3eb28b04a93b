"""Numerical checks that print what they compare: measured value, true value, tolerance.

Every derivation in the notebooks ends with one of these. A check that fails raises
AssertionError, so a notebook with a wrong formula stops there, and the test suite, which runs
every notebook, fails with it. `must_fail` shows that a check can fail: it feeds it a deliberately
wrong formula. k = 4 standard errors (K) gives a false-failure rate of 6.3e-5 per two-sided check
(notebook 00, sec. 7); a KS check fails below p = KS_ALPHA.
"""
from __future__ import annotations

import math

import torch

K = 4.0
KS_ALPHA = 1e-4


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


def below(label: str, measured, limit, se, k: float = K, unit: str = "s.e.") -> float:
    """One-sided check: measured + k standard errors < limit; print the line. Returns the margin in s.e."""
    m, lim, s = _as_float(measured), _as_float(limit), _as_float(se)
    margin = (lim - m) / s
    ok = margin > k
    print(f"{'PASS' if ok else 'FAIL'}  {label}: measured {m:.5g} +- {s:.2g} (1 {unit}), limit {lim:.5g}, "
          f"margin {margin:.1f} {unit} (needs > {k:g})")
    if not ok:
        raise AssertionError(f"{label}: {m:.5g} is not below {lim:.5g} by {k:g} standard errors")
    return margin


def exceeds(label: str, measured, bound, se, k: float = K) -> float:
    """One-sided check: measured lies above bound by at least k standard errors; print the line. Returns z."""
    m, b, s = _as_float(measured), _as_float(bound), _as_float(se)
    z = (m - b) / s
    ok = z >= k
    print(f"{'PASS' if ok else 'FAIL'}  {label}: measured {m:.4g} +- {s:.2g} (1 s.e.), must exceed {b:.4g} "
          f"by {k:g} s.e.: z = {z:+.1f}")
    if not ok:
        raise AssertionError(f"{label}: only {z:.1f} standard errors above {b:.4g} (need {k:g})")
    return z


def ks_check(label: str, pvalue, alpha: float = KS_ALPHA) -> float:
    """A Kolmogorov-Smirnov test's verdict: print the line; fails when p < alpha (false-failure rate alpha)."""
    p = _as_float(pvalue)
    ok = p > alpha
    print(f"{'PASS' if ok else 'FAIL'}  {label}: KS p-value {p:.3g} (fails below {alpha:g})")
    if not ok:
        raise AssertionError(f"{label}: KS p-value {p:.3g} < {alpha:g}")
    return p


def must_fail(check, what: str) -> None:
    """Run `check()` on a deliberately wrong formula: it has to raise AssertionError, or the check
    could not catch the error it is there for (RuntimeError then)."""
    try:
        check()
    except AssertionError:
        print(f"  -> rejected, as it must be: {what}")
    else:
        raise RuntimeError(f"the check accepted a wrong formula ({what}): it cannot catch errors")


def generators(seed: int, device="cpu"):
    """gen(offset) -> a fresh torch.Generator seeded with seed + offset: one per check, so that each
    check is deterministic on its own and does not depend on the draws of the others."""
    return lambda offset, device=device: torch.Generator(device).manual_seed(seed + offset)
