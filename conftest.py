"""Settings for the whole `pytest tests --nbmake notebooks` run (tests/conftest.py has the tests' own).

Notebook runs (nbmake, and the tests that execute notebooks in this process) poll the kernel in
short steps: see scripts/kernel_poll.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

from kernel_poll import patch_nbclient  # noqa: E402

patch_nbclient()
