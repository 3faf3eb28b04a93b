"""Measured results that take longer than a class: computed by a command, shipped, loaded with provenance.

    python -m diffusion_lib results table1 --out assets/results/06_table1.json

writes what the experiment `table1` (course/experiments/) returns, with the command line, the git
commit, the machine, the date, the library version and the seconds it took. A notebook loads it with
`load_results` and prints `describe(provenance)` above the table, so a reader knows these numbers
were loaded, not computed live, and where they came from (docs/design.md, sec. 4).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from ..utils.files import atomic_write
from ..utils.version import __version__

FORMAT = "diffusion_lib results"


def machine() -> str:
    """The machine in words: CPU model and cores, the accelerator if one is used, torch's version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def git_commit(folder: Path | None = None) -> str:
    """The commit of the repository the library lives in, with "+changes" when its tree differs."""
    folder = folder or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=folder, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if dirty else "")


def save_results(path, name: str, data: dict, seconds: float, command: str | None = None) -> Path:
    """Write `data` (JSON-serialisable) with its provenance to `path`, atomically."""
    provenance = {"name": name, "command": command or "python -m diffusion_lib " + shlex.join(sys.argv[1:]),
                  "commit": git_commit(), "machine": machine(),
                  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "seconds": round(float(seconds), 1), "library_version": __version__}
    text = json.dumps({"format": FORMAT, "provenance": provenance, "data": data}, indent=1)
    return atomic_write(path, lambda f: f.write(text.encode() + b"\n"))


def load_results(path) -> tuple[dict, dict]:
    """(data, provenance) from a results file; ValueError names the file when it is not one."""
    path = Path(path)
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read as a results file: {e}") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise ValueError(f"{path} is not a diffusion_lib results file (no 'format': {FORMAT!r})")
    return stored["data"], stored["provenance"]


def describe(provenance: dict) -> str:
    """The one-line label a notebook prints above loaded numbers."""
    p = provenance
    return (f"Loaded, not live: `{p['command']}` (commit {p['commit']}) on {p['machine']}, {p['date']}, "
            f"{p['seconds']:.0f} s. Set RECOMPUTE = True to compute it here.")
