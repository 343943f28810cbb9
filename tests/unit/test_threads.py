"""A service's own threads: the caller's context goes along, a call after close still runs (once),
and an error of the work itself is raised, never taken for a closed pool. Blocking work that takes
turns runs one job at a time, the most urgent first, and never waits long behind a stuck one."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from shared.threads import Priority, Threads, Turns, turns

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


# ---------------------------------------------------------------------- turns
async def _held_turn(threads: Threads, release: threading.Event, priority: Priority = Priority.LATER) -> asyncio.Task:
    """A job that holds the process's turn until `release` is set, already running."""
    started = threading.Event()

    def hold() -> str:
        started.set()
        release.wait(10)
        return "held"

    task = asyncio.ensure_future(threads.run_in_turn(priority, hold))
    while not started.is_set():
        await asyncio.sleep(0.001)
    return task


async def test_waiting_jobs_run_one_at_a_time_most_urgent_first_then_in_order_of_arrival():
    mine = Turns(patience_s=30)  # (none is overdue here)
    threads = Threads("yf-test", max_workers=8, turns=mine)
    release = threading.Event()
    holder = await _held_turn(threads, release)
    ran: list[str] = []
    inside = []

    def job(name: str) -> str:
        inside.append(name)
        assert len(inside) == 1, f"{inside} ran at once"
        ran.append(name)
        inside.remove(name)
        return name

    arrivals = [("clean-up", Priority.LATER), ("commit a", Priority.FLOW), ("worktree", Priority.AGENT),
                ("merge a", Priority.FLOW), ("start", Priority.AGENT)]
    waiting = [asyncio.ensure_future(threads.run_in_turn(p, job, name)) for name, p in arrivals]
    await asyncio.sleep(0.02)
    assert ran == [] and mine.waiting == 5  # all wait while the turn is held
    release.set()
    assert await holder == "held"
    assert await asyncio.gather(*waiting) == [name for name, _ in arrivals]
    assert ran == ["worktree", "start", "commit a", "merge a", "clean-up"]
    assert mine.running == 0 and mine.waiting == 0
    threads.close()


async def test_a_job_that_runs_past_the_patience_lets_the_next_one_start_beside_it():
    """(e.g. a lock held by someone else's git): it does not hold the process's git work back."""
    mine = Turns(patience_s=0.05)
    threads = Threads("yf-test", max_workers=4, turns=mine)
    release = threading.Event()
    stuck = await _held_turn(threads, release, Priority.FLOW)
    try:
        # done while the first is still held, once the patience has passed
        assert await asyncio.wait_for(threads.run_in_turn(Priority.AGENT, lambda: "next"), 5) == "next"
        assert not stuck.done()
    finally:
        release.set()
    assert await stuck == "held"
    assert mine.running == 0
    threads.close()


async def test_a_job_that_waited_past_the_starvation_limit_goes_before_more_urgent_ones():
    """(a process whose agents and merges never stop still gets its clean-up done)"""
    threads = Threads("yf-test", max_workers=4, turns=Turns(patience_s=30, starve_s=0.05))
    release = threading.Event()
    holder = await _held_turn(threads, release)
    ran: list[str] = []
    clean_up = asyncio.ensure_future(threads.run_in_turn(Priority.LATER, ran.append, "clean-up"))
    await asyncio.sleep(0.1)
    urgent = asyncio.ensure_future(threads.run_in_turn(Priority.AGENT, ran.append, "worktree"))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(holder, clean_up, urgent)
    assert ran == ["clean-up", "worktree"]
    threads.close()


async def test_a_failing_job_or_a_cancelled_waiter_gives_its_turn_back():
    mine = Turns(patience_s=30)
    threads = Threads("yf-test", max_workers=4, turns=mine)

    def failing() -> None:
        raise ValueError("the job's own error")

    with pytest.raises(ValueError, match="the job's own error"):
        await threads.run_in_turn(Priority.FLOW, failing)
    assert mine.running == 0
    release = threading.Event()
    holder = await _held_turn(threads, release)
    given_up = asyncio.ensure_future(threads.run_in_turn(Priority.AGENT, lambda: "never"))
    later = asyncio.ensure_future(threads.run_in_turn(Priority.LATER, lambda: "later"))
    await asyncio.sleep(0.01)
    given_up.cancel()
    release.set()
    assert await holder == "held" and await asyncio.wait_for(later, 5) == "later"
    assert given_up.cancelled() and mine.running == 0 and mine.waiting == 0
    threads.close()


async def test_each_event_loop_has_its_own_turns():
    mine = turns()
    other: list[Turns] = []
    thread = threading.Thread(target=lambda: other.append(asyncio.run(_turns_of_a_new_loop())))
    thread.start()
    thread.join(10)
    assert other and other[0] is not mine and turns() is mine


async def _turns_of_a_new_loop() -> Turns:
    return turns()
