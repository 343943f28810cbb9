"""A service's own threads: the caller's context goes along, a call after close still runs (once),
and an error of the work itself is raised, never taken for a closed pool."""

from __future__ import annotations

import contextvars
import threading

import pytest

from shared.threads import Threads

WHO = contextvars.ContextVar("who", default="nobody")


async def test_work_runs_on_the_services_threads_in_the_callers_context_and_after_close_on_the_default_pool():
    threads = Threads("yf-test", max_workers=1)
    WHO.set("the caller")
    seen = await threads.run(lambda: (WHO.get(), threading.current_thread().name))
    assert seen[0] == "the caller" and seen[1].startswith("yf-test")
    threads.close()
    calls = []
    after = await threads.run(lambda: calls.append(threading.current_thread().name) or WHO.get())
    assert after == "the caller" and len(calls) == 1 and not calls[0].startswith("yf-test")


async def test_a_runtime_error_of_the_work_is_raised_once():
    threads = Threads("yf-test", max_workers=1)
    calls = []

    def failing() -> None:
        calls.append(1)
        raise RuntimeError("the work's own error")

    with pytest.raises(RuntimeError, match="the work's own error"):
        await threads.run(failing)
    assert calls == [1]
    threads.close()
