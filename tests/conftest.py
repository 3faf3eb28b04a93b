"""Settings shared by the whole test suite.

Threads: every test process runs torch on one thread (DIFFUSION_TEST_THREADS to change it). The
tensors here are small, and on a 2-core machine that also runs notebook kernels, two threads per
process fight for the cores (how much slower that was, measured: README, Tests).

Seed sweep: DIFFUSION_TEST_SEED_SHIFT=k adds k to every seed the tests set through
torch.Generator().manual_seed, torch.manual_seed, numpy's default_rng, RandomState and seed.
Fixed seeds keep the suite deterministic; scripts/seed_sweep.py runs the statistical tests under
200 shifts and counts failures against the false-failure rate each module states.

Shared by several modules, defined once here: MICRO (a micro UNetConfig) and randomized(model)
(random weights everywhere), imported with `from conftest import ...`; the fixtures `digits`
(the digits' train split) and `all_digits` (all 1,797 digits).
"""
import os

import numpy as np
import pytest
import torch

torch.set_num_threads(int(os.environ.get("DIFFUSION_TEST_THREADS", "1")))

SEED_SHIFT = int(os.environ.get("DIFFUSION_TEST_SEED_SHIFT", "0"))


def _shifted(seed):
    return seed + SEED_SHIFT if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else seed


if SEED_SHIFT:
    class _ShiftedGenerator(torch.Generator):
        def manual_seed(self, seed):
            return super().manual_seed(_shifted(seed))

    _torch_manual_seed, _default_rng = torch.manual_seed, np.random.default_rng
    _np_seed, _RandomState = np.random.seed, np.random.RandomState

    class _ShiftedRandomState(_RandomState):
        def __init__(self, seed=None):
            super().__init__(_shifted(seed))

    torch.Generator = _ShiftedGenerator
    torch.manual_seed = lambda seed: _torch_manual_seed(_shifted(seed))
    np.random.default_rng = lambda seed=None: _default_rng(_shifted(seed))
    np.random.seed = lambda seed=None: _np_seed(_shifted(seed))
    np.random.RandomState = _ShiftedRandomState


# --- what several test modules share (imported after the seed shift above, so that the library sees
# the shifted generators) ----------------------------------------------------------------------------
# MICRO and randomized are plain values: `from conftest import MICRO, randomized` (tests/ is on
# sys.path under pytest's default import mode; a process spawned by a test inherits that path).

from diffusion_lib.data import load_dataset  # noqa: E402
from diffusion_lib.model.unet import UNetConfig  # noqa: E402

# A micro U-Net for 8x8 images (8 channels, one block per level) that keeps training, sampling and
# checkpoint tests short. test_train.py adds dropout to it.
MICRO = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, time_embed_dim=32, groups=4)


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`model` with every parameter drawn from N(0, 0.2^2) by a Generator seeded with `seed`, in eval
    mode. The U-Net's zero-initialised output layers would make eps_hat = 0 and hide wiring bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    """The offline digits' train split (1,498 images, 8x8, 17 grey levels), loaded once per module."""
    return load_dataset("digits", "train")


@pytest.fixture(scope="module")
def all_digits():
    """All 1,797 offline digits (train and test split together), loaded once per module."""
    return load_dataset("digits", "all")
