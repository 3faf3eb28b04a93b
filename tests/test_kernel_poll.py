"""The kernel-poll workaround (scripts/kernel_poll.py) is active in this test run and fails loudly when
nbclient changes under it. Deterministic: designed false-failure rate 0."""
import nbclient
import pytest
from nbclient import NotebookClient

import kernel_poll


def test_the_plugin_patched_nbclient_before_any_notebook_ran():
    assert getattr(NotebookClient, "_polls_in_short_steps", False), \
        "pyproject.toml loads scripts/kernel_poll.py with -p kernel_poll; it did not patch nbclient"


def test_a_missing_method_is_reported_not_ignored(monkeypatch):
    monkeypatch.delattr(NotebookClient, "_polls_in_short_steps")
    monkeypatch.delattr(NotebookClient, "async_start_new_kernel_client")
    with pytest.raises(RuntimeError, match=f"nbclient {nbclient.__version__} has no .*async_start_new_kernel_client"):
        kernel_poll.patch_nbclient()


def test_short_polls_wait_out_the_whole_timeout_in_steps(monkeypatch):
    import asyncio
    from queue import Empty

    calls = []

    class Channel:
        async def get_msg(self, timeout=None):
            calls.append(timeout)
            raise Empty

    monkeypatch.setattr(kernel_poll, "POLL_S", 0.05)
    channel = Channel()
    kernel_poll._short_polls(channel)
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=0.3))
    assert len(calls) >= 5 and max(calls) <= 0.05 + 1e-9, calls       # many short polls, none longer than a step
