"""A run cancelled while agents run and merges are under way: nothing new starts for it after
RunCancelled (no agent, worktree, merge attempt, conflict, batch, learning or ending), only what
work already in hand leads to, and every invariant holds once the consumers have settled."""

from __future__ import annotations

from shared import events as ev
from shared.commands import cancel_run, start_run
from tests.chaos.faults import until
from tests.chaos.invariants import check_invariants, run_events
from tests.support.system import config, next_event, running_system

PLAN = {"name": "wide", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": f"t{i}", "title": f"Task {i}", "tests": ["test -d yokeflow-sleep"]} for i in range(8)]}]}
CONSUMERS = ("planner", "executor", "merger", "learner", "ledger")


async def settled(bus) -> bool:
    """Every service has handled everything in the log (nothing pending, nothing unacked)."""
    for name in CONSUMERS:
        info = await bus.js.consumer_info(bus.stream, name)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def test_cancelling_with_agents_and_merges_in_flight_starts_nothing_after(nats_server, database_url, unique,
                                                                               git_repo):
    # merges are slowed by a validation command, so some are under way when the cancellation lands
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 4}, agent={"provider": "sleep:1000"},
                 merge={"validate_command": "sleep 1"})
    async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        run = started.run_id
        # the first merge has begun: its agent finished, the next agents are being started
        await next_event(bus, lambda e: isinstance(e, ev.AgentFinished) and e.run_id == run, timeout=60)
        await until(lambda: _agents_running(bus, run), what="agents running while a merge is under way")
        cancelled = await cancel_run(bus, started.project_id, run)
        await until(lambda: settled(bus), tries=600, what="every consumer settled after the cancellation")
        events = await run_events(bus, run)
        at = next(seq for seq, e in events if e.event_id == cancelled.event_id)
        before = [e for seq, e in events if seq < at]
        # the fault was where it should be: attempts in flight and merges not yet recorded at the cancel
        running = {(e.task_id, e.attempt) for e in before if isinstance(e, ev.TaskReady)} - {
            (e.task_id, e.attempt) for e in before if isinstance(e, ev.AgentFinished)}
        unmerged = {e.task_id for e in before if isinstance(e, ev.AgentFinished) and e.outcome == "success"} - {
            e.task_id for e in before if isinstance(e, ev.BranchMerged)}
        assert running and unmerged, (running, unmerged)
        terminal = await check_invariants(bus, git_repo, run, database_url=database_url)
        assert any(isinstance(e, ev.TaskCancelled) for e in terminal.values())


async def _agents_running(bus, run_id: str) -> bool:
    events = [e for _, e in await run_events(bus, run_id)]
    started = {(e.task_id, e.attempt) for e in events if isinstance(e, ev.AgentStarted)}  # an agent at work
    finished = {(e.task_id, e.attempt) for e in events if isinstance(e, ev.AgentFinished)}
    merging = {e.task_id for e in events if isinstance(e, ev.AgentFinished) and e.outcome == "success"} - {
        e.task_id for e in events if isinstance(e, ev.BranchMerged)}
    return bool(started - finished) and bool(merging)
