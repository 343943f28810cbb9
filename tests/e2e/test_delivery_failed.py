"""A task whose TaskReady no executor can handle ends its run with the reason, instead of
leaving it running forever: DeliveryFailed names the run, task and attempt, the scheduler
fails the attempt (retries, then fails for good), and `status` and the gateway show why."""

from __future__ import annotations

import asyncio

import pytest

from shared import events as ev, readmodel
from shared.commands import start_run
from tests.support.system import config, events_of, running_system, wait_for_end
from yokeflow.commands.runtime import collect_status

pytestmark = pytest.mark.e2e

PLAN = {"name": "poison", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "doomed", "title": "Doomed"}, {"id": "after", "title": "After", "depends_on": ["doomed"]}]}]}


async def test_an_executor_that_always_fails_ends_the_run_with_its_reason(nats_server, database_url, unique, git_repo):
    cfg = config(parallel={"strategy": "by_task", "max_attempts": 2}, agent={"provider": "sleep:10"})
    async with running_system(nats_server.url, database_url, unique, cfg,
                              services=("ledger", "planner", "merger")) as (system, bus):
        stop = asyncio.Event()
        calls: list[int] = []

        async def broken_executor(d) -> None:
            calls.append(d.event.attempt)
            raise RuntimeError("the executor cannot start an agent")

        as_executor = await system.endpoint.bus("yokeflow-executor")  # only an executor may report its failures
        executor = asyncio.create_task(as_executor.consume("executor", [bus.type_filter("TaskReady")], broken_executor,
                                                   stop=stop, max_deliver=2, backoff=(0.05,)))
        try:
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id, timeout=90)
        finally:
            stop.set()
            await executor
            await as_executor.close()
        events = await events_of(bus, started.run_id)
        await system.database.wait_for("ledger", await bus.last_seq())
        status = await collect_status(system.endpoint, started.run_id)
        detail = await readmodel.task_detail(system.database, started.run_id, "doomed")

    assert calls == [1, 1, 2, 2]  # two deliveries of each of the two attempts
    failures = [e for e in events if isinstance(e, ev.DeliveryFailed)]
    readies = [e for e in events if isinstance(e, ev.TaskReady)]
    assert [(f.task_id, f.attempt, f.consumer) for f in failures] == [("doomed", 1, "executor"), ("doomed", 2, "executor")]
    assert [f.failed_event_id for f in failures] == [r.event_id for r in readies]
    assert isinstance(end, ev.RunFailed)
    assert end.counts == ev.TaskCounts(done=0, failed=1, blocked=1, cancelled=0, total=2)
    assert "executor gave up on TaskReady after 2 deliveries" in end.reason
    assert "the executor cannot start an agent" in end.reason

    [run] = status["runs"]
    tasks = {t["id"]: t for t in run["tasks"]}
    assert run["status"] == "failed" and "cannot start an agent" in run["reason"]
    assert tasks["doomed"]["status"] == "failed" and "delivery failed" in tasks["doomed"]["reason"]
    assert "delivery failed" in detail["task"]["reason"]  # the gateway's task view
    assert [a["error"].startswith("delivery failed: executor") for a in detail["attempts"]] == [True, True]
