"""Poll a kernel's channels in short steps, so that a missed wake-up costs a second, not a timeout.

Running a notebook (nbmake in `make test`, scripts/build_book.py in `make book`), nbclient waits for
a cell's reply with one `get_msg(timeout=<the cell timeout>)`. On this course's machines that wait
sometimes misses the reply although the kernel has sent it (the kernel sits idle; seen in about one
run in ten of notebook 01, with ipykernel 6 and 7, pyzmq 27) and only notices it when the whole
cell timeout has passed: minutes of nothing, or a CI job killed (jupyter/nbclient#311/#312 describe
the same). A fresh poll sees the waiting message at once, so `patch_nbclient()` makes every
`get_msg` of a notebook run poll in steps of POLL_S seconds up to the same overall timeout. The
results do not change; only the stalls go.

Used as a pytest plugin (pyproject.toml: `-p kernel_poll` with `pythonpath = ["scripts"]`), so every
notebook that `make test` runs, through nbmake or nbclient, polls this way; scripts/build_book.py and
scripts/notebook_memory.py, which sit beside this file, import it directly. The patch replaces a
method of nbclient (run with nbclient 0.11); if a release renames it, `patch_nbclient` fails at
once with a message that says so, rather than letting the stalls come back unnoticed.
"""
from __future__ import annotations

import time
from queue import Empty

POLL_S = 1.0


def _short_polls(channel) -> None:
    """Replace channel.get_msg by a loop of get_msg calls of at most POLL_S seconds each."""
    one_poll = channel.get_msg

    async def get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await one_poll(timeout=min(POLL_S, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def patch_nbclient() -> None:
    """Make every NotebookClient created afterwards poll in short steps (idempotent).

    Raises RuntimeError when nbclient no longer has the method this patch wraps.
    """
    from nbclient import NotebookClient
    from nbclient.util import run_sync

    if getattr(NotebookClient, "_polls_in_short_steps", False):
        return
    start_client = getattr(NotebookClient, "async_start_new_kernel_client", None)
    if start_client is None:
        import nbclient

        raise RuntimeError(f"nbclient {nbclient.__version__} has no NotebookClient.async_start_new_kernel_client, "
                           f"which scripts/kernel_poll.py wraps to cure stalled notebook runs; update the patch "
                           f"for this nbclient or pin nbclient to a tested release (requirements.txt)")

    async def async_start_new_kernel_client(self):
        kc = await start_client(self)
        for channel in (kc.shell_channel, kc.iopub_channel):
            if not callable(getattr(channel, "get_msg", None)):
                raise RuntimeError(f"the kernel client's {type(channel).__name__} has no get_msg: "
                                   f"scripts/kernel_poll.py needs updating for this jupyter_client")
            _short_polls(channel)
        return kc

    NotebookClient.async_start_new_kernel_client = async_start_new_kernel_client
    NotebookClient.start_new_kernel_client = run_sync(async_start_new_kernel_client)
    NotebookClient._polls_in_short_steps = True


def pytest_configure(config) -> None:
    """pytest plugin hook: patch before any notebook runs (loaded by `-p kernel_poll`)."""
    patch_nbclient()
