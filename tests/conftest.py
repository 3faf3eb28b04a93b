"""Settings shared by the whole test suite.

Threads: every test process runs torch on one thread (DIFFUSION_TEST_THREADS to change it). The
tensors here are small, and on a 2-core machine that also runs notebook kernels, two threads per
process fight for the cores (measured 10x slower on a busy machine).

Seed sweep: DIFFUSION_TEST_SEED_SHIFT=k adds k to every seed the tests set through
torch.Generator().manual_seed, torch.manual_seed, numpy's default_rng, RandomState and seed.
Fixed seeds keep the suite deterministic; scripts/seed_sweep.py runs the statistical tests under
200 shifts and counts failures against the false-failure rate each module states.
"""
import os

import numpy as np
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
