"""A task whose checks fail is not done; after its last try its dependents are blocked, visibly."""

from __future__ import annotations

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.e2e


async def test_failing_checks_fail_the_task_and_block_its_dependents(nats_server, database_url, unique, git_repo):
    plan = {"name": "f", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "broken", "title": "Broken", "tests": ["test -f never-written.txt"]},
        {"id": "fine", "title": "Fine", "tests": ["test -d yokeflow-sleep"]},
        {"id": "child", "title": "Child", "depends_on": ["broken"]},
        {"id": "grandchild", "title": "Grandchild", "depends_on": ["child"]}]}]}
    cfg = config(parallel={"strategy": "by_task", "max_attempts": 2},
                 agent={"provider": "sleep:10", "max_fix_rounds": 0})
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, plan, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunFailed)
    assert end.counts == ev.TaskCounts(done=1, failed=1, blocked=2, cancelled=0, total=4)
    attempts = [e for e in events if isinstance(e, ev.AgentFinished) and e.task_id == "broken"]
    assert [a.outcome for a in attempts] == ["failure", "failure"]  # retried once, then final
    assert attempts[0].checks[0].passed is False
    blocked = {e.task_id: e for e in events if isinstance(e, ev.TaskBlocked)}
    assert set(blocked) == {"child", "grandchild"}
    assert "broken failed" in blocked["child"].reason and "child blocked" in blocked["grandchild"].reason
    assert not [e for e in events if isinstance(e, ev.BranchMerged) and e.task_id == "broken"]
