"""What every function check of the exercises must do with its reference answer (tests/test_exercises*.py)."""
import torch

from diffusion_lib.course import exercises


def assert_accepts(check, right, out: str) -> None:
    """The check passes the reference answer, within the course's tolerance, and prints "correct"."""
    result = check(right)
    assert result and result.status == "correct" and result.error <= exercises.TOL
    assert "correct" in out()


def assert_accepts_float32(check, right) -> None:
    """The check passes the reference answer computed in float32 (students' arithmetic)."""
    def in_float32(*args):
        out = right(*[a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args])
        return torch.as_tensor(out).float()
    assert check(in_float32)
