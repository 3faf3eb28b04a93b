"""Helpers for tests/test_browser.py: JupyterLab on localhost and headless Debian Chromium.

JupyterLab serves a temporary copy of notebooks/ (running a notebook in the browser autosaves it and
creates checkpoints, which must not touch the working tree); the copy sits beside links to the
repository's other top-level folders, so paths such as ../assets still resolve. The browser is
Debian's chromium driven by the `playwright` package from PyPI; `playwright install` (which
downloads a browser build) is never used.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def find_chromium() -> str | None:
    """$CHROMIUM, else /usr/bin/chromium (Debian's package), else chromium on the PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_browser() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("the Python package playwright is not installed (pip install playwright; "
                ".ci/run installs it); never `playwright install`, it uses Debian's chromium")
    if find_chromium() is None:
        return "no Chromium found at /usr/bin/chromium or on the PATH (apt-get install chromium; .ci/run does)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Terminate a process we started (SIGTERM, then SIGKILL after `grace` seconds)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# User settings for the test's JupyterLab: render every cell (JupyterLab 4 otherwise leaves cells
# out of view out of the page), and no "get notified about Jupyter news?" question over the page.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def _write_settings(folder: Path) -> None:
    for name, values in SETTINGS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(values))


@contextlib.contextmanager
def jupyterlab(log_path: Path, startup_timeout: float = 120.0, env_extra: dict | None = None):
    """Start JupyterLab on a free localhost port over a temporary copy of notebooks/.

    Yields (base_url, token, root_dir). FAST=1 is set for the kernels. The server, its kernels and
    the temporary folder are gone when the block ends, also after a failure.
    """
    tmp = Path(tempfile.mkdtemp(prefix="course-lab-"))
    root = tmp / "repo"
    root.mkdir()
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for entry in REPO.iterdir():                       # ../assets, ../runs, ... as seen from notebooks/
        if entry.name not in ("notebooks", ".git", ".venv") and not entry.name.startswith("_"):
            (root / entry.name).symlink_to(entry)
    _write_settings(tmp / "settings")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, FAST="1", JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), IPYTHONDIR=str(tmp / "ipython"),
               **(env_extra or {}))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={root / 'notebooks'}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.getuid() == 0:
        cmd.append("--allow-root")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root / "notebooks")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {startup_timeout:.0f} s; see {log_path}")
            time.sleep(0.5)
        yield base, token, root / "notebooks"
    finally:
        with contextlib.suppress(OSError):             # shut kernels down cleanly, then the server
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        _stop(proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def chromium(playwright, viewport=(1400, 1000)):
    """A headless Debian Chromium with a fresh profile; yields a persistent browser context."""
    profile = tempfile.mkdtemp(prefix="course-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": viewport[0], "height": viewport[1]})
    try:
        yield context
    finally:
        with contextlib.suppress(Exception):
            context.close()
        shutil.rmtree(profile, ignore_errors=True)


def pixels(png: bytes):
    """A PNG (a screenshot) as a float array (H, W, channels) in [0, 1]."""
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png")


def changed_fraction(before: bytes, after: bytes, threshold: float = 0.1) -> float:
    """The fraction of pixels whose value moved by more than `threshold` (any channel); 1 if sizes differ."""
    a, b = pixels(before), pixels(after)
    if a.shape != b.shape:
        return 1.0
    return float((abs(a - b) > threshold).any(axis=-1).mean())
