"""Threads a service keeps for its own blocking work (git), so that work never waits for another
service's in the event loop's default pool (a few threads, shared by everything in the process).

Git work that costs the interpreter's time (checkouts, commits, merges: dulwich is Python) can also
take turns (`Threads.run_in_turn`): one job of the process's event loop at a time, the most urgent
first. The interpreter lock runs one of them at a time anyway; shared in turns of a few
milliseconds, five jobs that arrive together all end at about the time the last one would have
ended alone, while one after the other the first is done in a fifth of that. So a worktree an
agent waits for goes before the commits and merges that arrived with it, and those go before
clean-up. A job that runs longer than `PATIENCE_S` (a lock held by someone else's git, a large
checkout) stops holding the others back: the next one starts beside it; one that has waited
`STARVE_S` goes next whatever its priority, so a busy process still gets its clean-up done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import functools
import itertools
import weakref
from typing import Any, Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")

PATIENCE_S = 0.1  # a turn longer than this lets the next job start beside it
STARVE_S = 0.5  # a job that has waited this long goes next, whatever its priority


class Priority(enum.IntEnum):
    """Which git job of the process goes first (lower first; in order of arrival within one)."""
    AGENT = 0  # an agent waits for it: an attempt's worktree and its start
    FLOW = 1   # dependents wait for it: a finished attempt's commit, its merge
    LATER = 2  # nothing waits: clean-up after a run


class Turns:
    """Hands out turns to run blocking work, one at a time, by priority then arrival. A turn held
    longer than `patience_s` no longer counts: the next waiter starts beside it."""

    def __init__(self, patience_s: float = PATIENCE_S, starve_s: float = STARVE_S):
        self.patience_s = patience_s
        self.starve_s = starve_s
        self.running = 0  # turns that count (at most one)
        self._waiting: list[tuple[int, int, float, asyncio.Future]] = []  # (priority, arrival, since, waiter)
        self._order = itertools.count()

    async def take(self, priority: Priority) -> "Turn":
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiting.append((int(priority), next(self._order), loop.time(), waiter))
        self._next()  # nothing running: this one goes now
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a turn just as it was cancelled
                waiter.result().end()
            raise

    def _start(self) -> "Turn":
        self.running += 1
        turn = Turn(self)
        turn.timer = asyncio.get_running_loop().call_later(self.patience_s, turn.overdue)
        return turn

    def _next(self) -> None:
        self._waiting = [w for w in self._waiting if not w[-1].done()]  # (a cancelled waiter left its entry)
        if self.running or not self._waiting:
            return
        starved = asyncio.get_running_loop().time() - self.starve_s

        def order(waiting: tuple[int, int, float, asyncio.Future]) -> tuple[int, ...]:
            priority, arrival, since, _ = waiting
            return (0, arrival) if since <= starved else (1, priority, arrival)

        first = min(self._waiting, key=order)
        self._waiting.remove(first)
        first[-1].set_result(self._start())

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiting if not w[-1].done())


class Turn:
    def __init__(self, turns: Turns):
        self.turns = turns
        self.counts = True
        self.timer: asyncio.TimerHandle | None = None

    def overdue(self) -> None:
        """Still running after the patience (or ended): it stops counting, the next waiter goes."""
        if self.counts:
            self.counts = False
            self.turns.running -= 1
            self.turns._next()

    def end(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.overdue()


class PerLoop(Generic[T]):
    """One `factory()` per running event loop, made on first use: what every service in that loop
    (one process's) shares."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._made: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T]" = weakref.WeakKeyDictionary()

    def __call__(self) -> T:
        loop = asyncio.get_running_loop()
        found = self._made.get(loop)
        if found is None:
            found = self._made[loop] = self._factory()
        return found


turns = PerLoop(Turns)  # the running event loop's turns


class Threads:
    def __init__(self, name: str, max_workers: int, *, turns: Turns | None = None):
        """`turns`: whose turns `run_in_turn` takes (default: the running event loop's, shared by
        every service of the process)."""
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._turns = turns

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

    async def run_in_turn(self, priority: Priority, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`run`, once the process's turn for blocking work comes to `priority` (see the module's
        docstring). For work that costs the interpreter's time; not for waiting on a network."""
        return await self._in_turn(priority, lambda: self.run(fn, *args, **kwargs))

    async def run_in_worker(self, priority: Priority, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`run_in_turn`, in the process's git worker (shared.gitworker) instead of on a thread: for
        a module-level `fn` whose arguments and result pickle."""
        from shared.gitworker import git_worker
        return await self._in_turn(priority, lambda: git_worker().run(fn, *args, **kwargs))

    async def _in_turn(self, priority: Priority, work: Callable[[], Awaitable[T]]) -> T:
        turn = await (self._turns or turns()).take(priority)
        try:
            return await work()
        finally:
            turn.end()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
