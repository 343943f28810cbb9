"""A run whose executors are gone entirely: nothing can start its tasks, and `status` says so
(which task waits, for how long, and that no executor is there) instead of showing a run that
just sits at "running"."""

from __future__ import annotations

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.support.system import config, next_event, running_system
from shared.readmodel import waiting_line
from yokeflow.commands.runtime import collect_status

pytestmark = pytest.mark.e2e

PLAN = {"name": "alone", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "a", "title": "A"}]}]}


async def test_status_says_no_executor_has_taken_the_task(nats_server, database_url, unique, git_repo, bus):
    admin = bus
    cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10"})
    async with running_system(nats_server.url, database_url, unique, cfg,
                              services=("ledger", "planner", "merger", "learner")) as (system, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        await next_event(bus, lambda e: isinstance(e, ev.TaskReady) and e.run_id == started.run_id, timeout=30)
        await system.database.wait_for("ledger", await bus.last_seq())
        status = await collect_status(system.endpoint, started.run_id)
        # an executor that made the attempt's worktree holds it (waiting for its agent slot, say)
        await admin.publish(ev.WorktreeCreated(project_id=started.project_id, aggregate_id=ev.task_aggregate_id(started.run_id, "a"),
                                             run_id=started.run_id, task_id="a", path="/w/a", branch="task/a"))
        await system.database.wait_for("ledger", await bus.last_seq())
        taken = await collect_status(system.endpoint, started.run_id)
    assert taken["runs"][0]["unstarted"] == [] and taken["executors_pulling"] is None

    [run] = status["runs"]
    assert run["status"] == "running"
    [waiting] = run["unstarted"]
    assert waiting["task_id"] == "a" and waiting["attempt"] == 1 and waiting["waiting_s"] >= 0
    assert status["executors_pulling"] is None  # no executor ever bound its consumer
    line = waiting_line(run["unstarted"], status["executors_pulling"])
    assert line.startswith("1 task(s) handed to the executors and not started; a has waited")
    assert "no executor is running (start one: `python -m services.executor`, or `yokeflow up`)" in line
