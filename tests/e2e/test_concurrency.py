"""`parallel.max_concurrency` is the one limit on agents in flight: executors take every task it lets through."""

from __future__ import annotations

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.e2e


def peak_in_flight(events: list[ev.Event]) -> int:
    """Agents running at once, in log order (AgentStarted up, AgentFinished down)."""
    running, peak = 0, 0
    for e in events:
        if isinstance(e, ev.AgentStarted):
            running += 1
            peak = max(peak, running)
        elif isinstance(e, ev.AgentFinished):
            running -= 1
    return peak


async def six_independent_tasks(nats_url: str, database_url: str, unique: str, git_repo,
                                max_concurrency: int, agent_ms: int) -> list[ev.Event]:
    """The log of a completed run of six tasks that need nothing of each other."""
    plan = {"name": "wide", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": f"t{i}", "title": f"Task {i}"} for i in range(6)]}]}
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": max_concurrency},
                 agent={"provider": f"sleep:{agent_ms}"})
    async with running_system(nats_url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, plan, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    return events


async def test_a_run_with_max_concurrency_six_runs_six_agents_at_once(nats_server, database_url, unique, git_repo):
    # Agents sleep long enough for the whole first wave to start before any finishes.
    events = await six_independent_tasks(nats_server.url, database_url, unique, git_repo, 6, 4000)
    assert peak_in_flight(events) == 6  # above the 4 slots executors used to hard-code, never above the setting


async def test_worktrees_are_prepared_ahead_of_a_free_slot_and_the_cap_still_holds(
        nats_server, database_url, unique, git_repo):
    events = await six_independent_tasks(nats_server.url, database_url, unique, git_repo, 2, 1500)
    assert peak_in_flight(events) == 2
    first_end = next(i for i, e in enumerate(events) if isinstance(e, ev.AgentFinished))
    before = events[:first_end]
    # while the first two agents ran, two more attempts were dispatched and their worktrees made
    assert sum(isinstance(e, ev.TaskReady) for e in before) == 4
    assert sum(isinstance(e, ev.WorktreeCreated) for e in before) == 4
    assert sum(isinstance(e, ev.AgentStarted) for e in before) == 2
    position = {(type(e).__name__, e.task_id): i for i, e in enumerate(events) if getattr(e, "task_id", "")}
    admitted = [e.task_id for e in events if isinstance(e, ev.AgentAdmitted)]
    assert sorted(admitted) == [f"t{i}" for i in range(6)]  # once each
    for task in admitted:  # a slot goes only to an attempt whose worktree is ready, and its agent starts then
        assert position[("WorktreeCreated", task)] < position[("AgentAdmitted", task)] < position[("AgentStarted", task)]
    # the agent starts while its AgentStarted is appended, but its calls' costs come after it in the log
    costs = [i for i, e in enumerate(events) if isinstance(e, ev.CostRecorded)]
    assert len(costs) == 12  # two calls per sleep agent
    for i in costs:
        assert position[("AgentStarted", events[i].task_id)] < i
    # a success's work is committed after its AgentFinished (which frees its slot: the scheduler's unit
    # tests), announced by WorkCommitted, and merged after that; the task completes on that commit
    for task in admitted:
        finished, committed = position[("AgentFinished", task)], position[("WorkCommitted", task)]
        assert finished < committed < position[("BranchMerged", task)]
        assert not events[finished].commit and events[finished].commit_follows
        assert events[committed].commit == next(e.commit for e in events if isinstance(e, ev.TaskCompleted)
                                                and e.task_id == task)
