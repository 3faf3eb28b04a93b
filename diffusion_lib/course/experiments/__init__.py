"""The experiments whose results the course ships (assets/results/), by name, one module per notebook.

Each registered experiment is a function `(seed: int = 0, fast: bool = False) -> dict` of plain JSON
values. A notebook calls the same function live (RECOMPUTE = True, or a smaller version within its
class-time budget); `python -m diffusion_lib results NAME --out FILE` runs it and saves it with its
provenance (course/results.py). Register a new one with @experiment("NAME") in registry.py's sense.
"""
from .registry import EXPERIMENTS, experiment, run_experiment
from .nb05 import ddpm_variances
from .common import EpsFromClippedX0, Sampler, black_fraction, draw, image_rmse, sigma_hat_sample
from .nb06_table1 import (TABLE1_STEPS, grid_text, live_rows, paired_difference, sampler_table, table1, table1_rows,
                          table1_summary, table_text)
from .nb06_clipping import clipping, clipping_study
from .nb08 import CALLS_08, fd_against_calls
from .nb09 import WEIGHTS, class_balanced, guided_digits, guidance_tradeoff, score, tradeoff

__all__ = ["EXPERIMENTS", "experiment", "run_experiment", "ddpm_variances", "TABLE1_STEPS", "Sampler", "draw",
           "grid_text", "image_rmse", "live_rows", "paired_difference", "sampler_table", "sigma_hat_sample", "table1",
           "table1_rows", "table1_summary", "table_text", "EpsFromClippedX0", "black_fraction", "clipping",
           "clipping_study", "CALLS_08", "fd_against_calls", "WEIGHTS", "class_balanced", "guided_digits",
           "guidance_tradeoff", "score", "tradeoff"]
