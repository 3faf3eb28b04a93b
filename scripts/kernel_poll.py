"""Poll a kernel's channels in short steps, so that a missed wake-up costs a second, not a timeout.

Running a notebook (nbmake in `make test`, scripts/build_book.py in `make book`), nbclient waits for
a cell's reply with one `get_msg(timeout=<the cell timeout>)`. On this course's machines that wait
sometimes misses the reply although the kernel has sent it (the kernel sits idle; seen in about one
run in ten of notebook 01, with ipykernel 6 and 7, pyzmq 27) and only notices it when the whole
cell timeout has passed: minutes of nothing, or a CI job killed (jupyter/nbclient#311/#312 describe
the same). A fresh poll sees the waiting message at once, so `patch_nbclient()` makes every
`get_msg` of a notebook run poll in steps of POLL_S seconds up to the same overall timeout. The
results do not change; only the stalls go.
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
    """Make every NotebookClient created afterwards poll in short steps (idempotent)."""
    from nbclient import NotebookClient
    from nbclient.util import run_sync

    if getattr(NotebookClient, "_polls_in_short_steps", False):
        return
    start_client = NotebookClient.async_start_new_kernel_client

    async def async_start_new_kernel_client(self):
        kc = await start_client(self)
        _short_polls(kc.shell_channel)
        _short_polls(kc.iopub_channel)
        return kc

    NotebookClient.async_start_new_kernel_client = async_start_new_kernel_client
    NotebookClient.start_new_kernel_client = run_sync(async_start_new_kernel_client)
    NotebookClient._polls_in_short_steps = True
