"""The notebooks' printed checks (diffusion_lib/course/verify.py): each passes what is true and raises
AssertionError on what is not, and `must_fail` refuses a check that cannot fail. Deterministic:
designed false-failure rate 0 (the Monte Carlo rate of within_se is checked against its formula).
"""
import math

import pytest
import torch

from diffusion_lib.course import verify


def test_close_absolute_relative_and_tensors(capsys):
    assert verify.close("a", 1.05, 1.0, 0.1) == pytest.approx(0.05)
    assert verify.close("r", 110.0, 100.0, 0.2, relative=True) == pytest.approx(0.1)
    verify.close("t", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.05]), 0.1)
    for bad in [lambda: verify.close("a", 1.2, 1.0, 0.1), lambda: verify.close("r", 150.0, 100.0, 0.2, relative=True)]:
        with pytest.raises(AssertionError, match="exceeds the tolerance"):
            bad()
    assert capsys.readouterr().out.count("PASS") == 3


def test_within_se_and_its_false_failure_rate():
    assert verify.within_se("m", 1.3, 1.0, 0.1) == pytest.approx(3.0)
    with pytest.raises(AssertionError, match="5.00 standard errors"):
        verify.within_se("m", 1.5, 1.0, 0.1)
    with pytest.raises(ValueError, match="standard error must be positive"):
        verify.within_se("m", 1.0, 1.0, 0.0)
    assert verify.false_failure_rate(verify.K) == pytest.approx(6.334e-5, rel=1e-3)
    assert verify.false_failure_rate(1.96) == pytest.approx(0.05, rel=1e-3)


def test_one_sided_checks():
    assert verify.below("b", 1.0, 2.0, 0.2) == pytest.approx(5.0)
    with pytest.raises(AssertionError, match="not below"):
        verify.below("b", 1.0, 2.0, 0.3)                      # 3.3 s.e. < 4
    assert verify.exceeds("e", 2.0, 1.0, 0.2) == pytest.approx(5.0)
    with pytest.raises(AssertionError, match="standard errors above"):
        verify.exceeds("e", 2.0, 1.0, 0.3)


def test_ks_check_and_must_fail():
    assert verify.ks_check("ks", 0.3) == 0.3
    with pytest.raises(AssertionError, match="KS p-value"):
        verify.ks_check("ks", verify.KS_ALPHA / 2)
    verify.must_fail(lambda: verify.close("wrong", 2.0, 1.0, 0.1), "a wrong formula")
    with pytest.raises(RuntimeError, match="cannot catch errors"):
        verify.must_fail(lambda: verify.close("right", 1.0, 1.0, 0.1), "a right formula")


def test_generators_are_fresh_and_seeded():
    gen = verify.generators(10)
    a, b = torch.rand(3, generator=gen(1)), torch.rand(3, generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, torch.rand(3, generator=gen(2)))
    assert gen(5).initial_seed() == 15 and not math.isnan(float(a.sum()))
