"""The agent loop's stoppable call (`_Run.guarded`): what it guards runs in the agent's own task, a
cancellation of the run stops it, and nothing of that cancellation leaks past the call."""

from __future__ import annotations

import asyncio

import pytest

from services.executor.agent.loop import _Cancelled, _Run


class FakeSandbox:
    def __init__(self) -> None:
        self.cancelled = 0

    def cancel(self) -> None:
        self.cancelled += 1


def guard() -> _Run:
    run = _Run.__new__(_Run)  # only what guarded() uses
    run.cancel, run.sandbox = asyncio.Event(), FakeSandbox()
    return run


async def test_work_that_never_waits_is_done_in_the_callers_own_step():
    run = guard()

    async def at_once() -> str:
        return "done"

    step = run.guarded(at_once())
    with pytest.raises(StopIteration) as finished:
        step.send(None)  # one step of the caller: no task of its own, no turn of the loop
    assert finished.value.value == "done"
    await asyncio.sleep(0)  # the cancel waiter it made is gone again
    assert not run.cancel.is_set() and run.sandbox.cancelled == 0


async def test_a_cancellation_stops_waiting_work_and_its_cleanup_runs():
    run, cleaned = guard(), []

    async def waits() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(True)

    asyncio.get_running_loop().call_later(0.05, run.cancel.set)
    with pytest.raises(_Cancelled):
        await asyncio.wait_for(run.guarded(waits()), 5)
    assert cleaned == [True] and run.sandbox.cancelled == 1
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0.01)  # and this task goes on waiting normally


async def test_the_run_cancelled_before_the_call_runs_nothing():
    run, ran = guard(), []

    async def work() -> None:
        ran.append(True)

    run.cancel.set()
    with pytest.raises(_Cancelled):
        await run.guarded(work())
    assert ran == []


async def test_cancelling_the_task_itself_is_not_taken_for_the_runs_cancellation():
    run = guard()
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(run.guarded(waits()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert run.sandbox.cancelled == 0


async def test_work_that_swallows_the_cancellation_still_ends_as_cancelled_and_leaves_nothing_pending():
    run = guard()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "ignored"
        return "slept"

    asyncio.get_running_loop().call_later(0.05, run.cancel.set)
    with pytest.raises(_Cancelled):
        await asyncio.wait_for(run.guarded(stubborn()), 5)
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0.01)


async def test_a_cancellation_after_the_call_returned_does_not_reach_the_task():
    run = guard()

    async def at_once() -> int:
        return 1

    assert await run.guarded(at_once()) == 1
    run.cancel.set()  # later: the next guarded call sees it, nothing else does
    await asyncio.sleep(0.01)
    assert asyncio.current_task().cancelling() == 0 and run.sandbox.cancelled == 0


async def test_a_cancellation_that_lands_as_the_work_returns_does_not_reach_the_task_later():
    run = guard()
    answer = asyncio.get_running_loop().create_future()

    async def waits_for_the_answer() -> int:
        return await answer

    def both_at_once() -> None:  # the run's cancellation, then the answer, in one turn of the loop
        run.cancel.set()
        answer.set_result(1)

    asyncio.get_running_loop().call_later(0.02, both_at_once)
    assert await run.guarded(waits_for_the_answer()) == 1  # the work was done: its answer stands
    await asyncio.sleep(0.01)  # a stray cancellation of this task would be raised here
    assert asyncio.current_task().cancelling() == 0
