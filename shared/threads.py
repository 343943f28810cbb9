"""Threads a service keeps for its own blocking work (git), so that work never waits for another
service's in the event loop's default pool (a few threads, shared by everything in the process)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class Threads:
    def __init__(self, name: str, max_workers: int):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on one of these threads, in the caller's context (its trace), as
        asyncio.to_thread does. After close (a handler still draining when its service stopped)
        the call runs on the default pool instead of failing."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, call)  # submitted here: a refusal means closed, fn never ran
        except RuntimeError:
            future = loop.run_in_executor(None, call)
        return await future

    def close(self) -> None:
        self._pool.shutdown(wait=False)
