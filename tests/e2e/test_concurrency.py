"""`parallel.max_concurrency` is the one limit on agents in flight: executors take every task it lets through."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

import pytest

from shared import events as ev
from shared.bus import Bus, ConcurrencyConflict
from shared.commands import start_run
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, events_of, next_event, running_system, wait_for_end

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
    # a slot is handed over as its agent ends: the AgentFinished names the candidate that takes it,
    # whose AgentStarted follows it in the log, with no admission of its own that gives a slot
    handed = [e for e in events if isinstance(e, ev.AgentFinished) and e.slot_to]
    assert handed, "no slot was handed over"
    for e in handed:
        assert position[("AgentFinished", e.task_id)] < position[("AgentStarted", e.slot_to)]
        assert not [a for a in events if isinstance(a, ev.AgentAdmitted) and a.task_id == e.slot_to and not a.candidate]
    # a success's work is committed after its AgentFinished (which frees its slot: the scheduler's unit
    # tests), announced by WorkCommitted, and merged after that; the task completes on that commit
    for task in admitted:
        finished, committed = position[("AgentFinished", task)], position[("WorkCommitted", task)]
        assert finished < committed < position[("BranchMerged", task)]
        assert not events[finished].commit and events[finished].commit_follows
        assert events[committed].commit == next(e.commit for e in events if isinstance(e, ev.TaskCompleted)
                                                and e.task_id == task)


async def refusal(bus, event_type: str):
    """A way to have the stream refuse an event that core NATS still delivers live: publish it against
    a stale sequence of its aggregate. Checks both halves (the fault is there), given a live
    subscription made before."""
    live: asyncio.Queue[ev.Event] = asyncio.Queue()

    async def on_live(msg) -> None:
        live.put_nowait(ev.decode(msg.data))

    await bus.subscribe_live(bus.type_filter(event_type), on_live)

    async def refuse(forged: ev.Event) -> None:
        with pytest.raises(ConcurrencyConflict):  # a stale view of the aggregate: the stream refuses it
            await bus.publish(forged, expected_seq=await bus.aggregate_seq(forged) - 1)

        async def delivered() -> None:
            while (await live.get()).event_id != forged.event_id:
                pass

        await asyncio.wait_for(delivered(), 10)  # ... and yet core subscribers got it

    return refuse


def held_agents(gate: threading.Event):
    """Fake model answers: every agent's first call waits for `gate`, then writes a file and finishes."""
    def answer(body: dict) -> dict:
        if not any(m["role"] == "assistant" for m in body["messages"]):
            gate.wait(120)
            return turn(tool("write_file", path=f"{uuid.uuid4().hex}.txt", content="done\n"))
        return turn(tool("finish", summary="wrote one file"))

    return [answer] * 20


async def test_an_admission_the_log_refused_starts_no_agent(nats_server, database_url, unique, git_repo, bus,
                                                            monkeypatch):
    """JetStream hands a publish to core NATS subscribers even when the stream refuses to store it (a
    lost optimistic check): the executor's live wake-up for AgentAdmitted may carry an admission the
    log never held, and an agent started on it would break the cap."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    gate = threading.Event()  # every agent's first model call waits here: the first agent keeps the one slot
    plan = {"name": "two", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "t0", "title": "Task 0"}, {"id": "t1", "title": "Task 1"}]}]}
    with FakeAnthropic(held_agents(gate)) as api:
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 1},
                     agent={"provider": "anthropic", "base_url": api.url})
        try:
            # `bus` (the operator's identity) may publish the scheduler's event; the system's own is the CLI's
            async with running_system(nats_server.url, database_url, unique, cfg):
                refuse = await refusal(bus, "AgentAdmitted")
                run = (await start_run(bus, plan, git_repo, cfg)).run_id
                first = await next_event(bus, lambda e: isinstance(e, ev.AgentStarted) and e.run_id == run)
                # the other attempt is dispatched ahead, its worktree made: it waits for the slot
                waiting = await next_event(bus, lambda e: isinstance(e, ev.WorktreeCreated) and e.run_id == run
                                           and e.task_id != first.task_id)
                assert not [e for e in await events_of(bus, run)  # (a candidate for a slot handed over, at most)
                            if isinstance(e, ev.AgentAdmitted) and e.task_id == waiting.task_id and not e.candidate]
                forged = waiting.caused(ev.AgentAdmitted, aggregate_id=waiting.aggregate_id, run_id=run,
                                        task_id=waiting.task_id, attempt=waiting.attempt)
                await refuse(forged)
                # An executor that takes the live message for the admission starts its agent now; the
                # pause lets that show (the assertions below do not depend on its length).
                await asyncio.sleep(0.5)
                gate.set()  # the first agent finishes, and the scheduler admits the waiting attempt itself
                end = await wait_for_end(bus, run)
                log = [(d.seq, d.event) async for d in bus.read() if getattr(d.event, "run_id", None) == run]
        finally:
            gate.set()
    assert isinstance(end, ev.RunCompleted), end
    assert forged.event_id not in {e.event_id for _, e in log}  # never stored
    admitted = [seq for seq, e in log if isinstance(e, ev.AgentAdmitted) and e.task_id == waiting.task_id]
    started = [seq for seq, e in log if isinstance(e, ev.AgentStarted) and e.task_id == waiting.task_id]
    assert len(admitted) == 1 and len(started) == 1, (admitted, started)  # started on a stored admission...
    assert admitted[0] < started[0]  # ... after it was stored
    assert peak_in_flight([e for _, e in log]) == 1


async def test_a_cancellation_the_log_refused_stops_no_agent(nats_server, database_url, unique, git_repo, bus,
                                                             monkeypatch):
    """The same for the executor's live TaskCancelled: a cancellation the stream refused would stop
    an agent whose task nobody cancelled (its attempt then ends as cancelled, and is run again)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    gate = threading.Event()
    plan = {"name": "one", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "t0", "title": "Task 0"}]}]}
    with FakeAnthropic(held_agents(gate)) as api:
        cfg = config(parallel={"max_concurrency": 1}, agent={"provider": "anthropic", "base_url": api.url})
        try:
            async with running_system(nats_server.url, database_url, unique, cfg):
                refuse = await refusal(bus, "TaskCancelled")
                run = (await start_run(bus, plan, git_repo, cfg)).run_id
                started = await next_event(bus, lambda e: isinstance(e, ev.AgentStarted) and e.run_id == run)
                await refuse(started.caused(ev.TaskCancelled, aggregate_id=started.aggregate_id, run_id=run,
                                            task_id=started.task_id, reason="refused"))
                await asyncio.sleep(0.5)  # an executor that believes the live message stops its agent now
                gate.set()
                end = await wait_for_end(bus, run)
                events = await events_of(bus, run)
        finally:
            gate.set()
    assert isinstance(end, ev.RunCompleted), end
    assert not [e for e in events if isinstance(e, ev.TaskCancelled)]
    finished = [e for e in events if isinstance(e, ev.AgentFinished)]
    assert [(e.attempt, e.outcome) for e in finished] == [(1, "success")]  # the one agent ran to its end


async def test_a_slot_handed_over_as_the_run_pauses_starts_no_agent_until_it_resumes(
        nats_server, database_url, unique, git_repo, bus, monkeypatch, caplog):
    """The executor hands an ending agent's slot to its candidate in the same append as that agent's
    AgentFinished, starting the candidate meanwhile. A pause stored first leaves the candidate out of
    that append: its agent stops, and it waits for a slot again. (The executor hands over only while
    the run is not paused as it last saw it, which the agent's cost records keep fresh: the pause
    must land in the moment between its last one and its end. Here it is made to have missed it.)"""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setattr(Bus, "run_last_known", lambda self, project_id, run_id: "")
    caplog.set_level(logging.INFO, logger="yokeflow.executor")
    first_gate, later_gate = threading.Event(), threading.Event()
    calls = []

    def answer(body: dict) -> dict:
        if not any(m["role"] == "assistant" for m in body["messages"]):
            calls.append(body)
            (first_gate if len(calls) == 1 else later_gate).wait(120)
            return turn(tool("write_file", path=f"{uuid.uuid4().hex}.txt", content="done\n"))
        return turn(tool("finish", summary="wrote one file"))

    plan = {"name": "two", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "t0", "title": "Task 0"}, {"id": "t1", "title": "Task 1"}]}]}
    with FakeAnthropic([answer] * 20) as api:
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 1},
                     agent={"provider": "anthropic", "base_url": api.url})
        try:
            async with running_system(nats_server.url, database_url, unique, cfg):
                run = (await start_run(bus, plan, git_repo, cfg)).run_id
                first = await next_event(bus, lambda e: isinstance(e, ev.AgentStarted) and e.run_id == run)
                other = "t1" if first.task_id == "t0" else "t0"
                await next_event(bus, lambda e: isinstance(e, ev.AgentAdmitted) and e.run_id == run
                                 and e.task_id == other and e.candidate)
                await asyncio.sleep(0.5)  # its executor takes it as a candidate as the admission reaches it
                # the planner's circuit breaker, as it pauses a run; it resumes the run after 2 s
                await bus.publish(ev.RunPaused(project_id=first.project_id, aggregate_id=run, run_id=run,
                                               reason="test pause", resume_after_s=2.0))
                first_gate.set()  # the first agent ends while the run is paused
                ended = await next_event(bus, lambda e: isinstance(e, ev.AgentFinished) and e.run_id == run)
                resumed = await next_event(bus, lambda e: isinstance(e, ev.RunResumed) and e.run_id == run)
                later_gate.set()
                end = await wait_for_end(bus, run)
                log = [(d.seq, d.event) async for d in bus.read() if getattr(d.event, "run_id", None) == run]
        finally:
            first_gate.set(), later_gate.set()
    assert isinstance(end, ev.RunCompleted), end
    assert ended.task_id == first.task_id and not ended.slot_to  # appended after the pause: it hands no slot over
    seq_of = {e.event_id: seq for seq, e in log}
    starts = [seq for seq, e in log if isinstance(e, ev.AgentStarted) and e.task_id == other]
    assert len(starts) == 1 and starts[0] > seq_of[resumed.event_id]  # its agent started once, after the resume
    # the fault happened: its agent had begun on the slot handed over, and stopped as that append was refused
    assert [r for r in caplog.records if "the slot handed to it was not recorded" in r.getMessage()
            and f"task {other} attempt 1" in r.getMessage()]
    assert peak_in_flight([e for _, e in log]) == 1
