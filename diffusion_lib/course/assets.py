"""The files the course ships in assets/: checkpoints and measured results, found from any working folder."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def asset(name: str) -> Path:
    """The path of a shipped file, assets/<name> beside the diffusion_lib folder (an editable install
    or a clone of the repository); raises FileNotFoundError naming it when it is not there."""
    path = ASSETS / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the notebooks need the repository's assets/ folder "
                                f"(run them from a clone of the course, installed with pip install -e .)")
    return path


def shipped_model(name: str = "digits.pt", device=None):
    """(model, schedule, info) of a shipped checkpoint, ready to sample (training.checkpoint.load_model)."""
    from ..training.checkpoint import load_model

    return load_model(asset(name), device=device)
