"""Peak memory of each notebook's kernel: run it top to bottom, then read the kernel's VmHWM.

    FAST=1 python scripts/notebook_memory.py                 # every notebook, FAST mode
    python scripts/notebook_memory.py notebooks/05_*.ipynb   # full runs of some

Each notebook runs in a fresh kernel (nbclient, as `make book` does, in the notebooks' folder);
a last cell appended to the in-memory copy reads the kernel process's peak resident set (VmHWM in
/proc/self/status; Linux). Prints one line per notebook with the peak and the run time. The
figures go to docs/teaching.md, where a teacher sizes a JupyterHub's mem_limit from them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
from kernel_poll import patch_nbclient  # noqa: E402

patch_nbclient()

PEAK_CELL = ("import re as _re, pathlib as _pl\n"
             "print('VMHWM_KB', _re.search(r'VmHWM:\\s+(\\d+) kB', _pl.Path('/proc/self/status').read_text()).group(1))")


def peak_of(path: Path, timeout: int) -> tuple[float, float]:
    """(peak resident set in MiB, seconds) of one notebook's kernel."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    text = "".join(out.get("text", "") for out in nb.cells[-1].outputs)
    kb = int(text.split("VMHWM_KB", 1)[1].split()[0])
    return kb / 1024, seconds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path,
                   default=sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    mode = "FAST=1" if os.environ.get("FAST") == "1" else "full"
    results = {}
    for path in args.notebooks:
        mib, seconds = peak_of(path.resolve(), args.timeout)
        results[path.name] = {"peak_mib": round(mib, 1), "seconds": round(seconds, 1), "mode": mode}
        print(f"{path.name:45s} {mode:6s} kernel peak {mib:7.0f} MiB  ({seconds:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
