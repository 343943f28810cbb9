"""A hard budget holds with three agents at once: the scripted Messages API server reports known
token counts, the spend never passes the limit, the run stops with BudgetExhausted and its
tasks pending (not failed), and raising the budget lets it finish."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from shared import db
from shared import events as ev
from shared.commands import start_run
from shared.llm.pricing import PriceTable
from shared.llm.types import Usage
from shared.budget_commands import set_budget
from tests.conftest import git
from yokeflow.progress import follow_run
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, events_of, next_event, running_system, wait_for_end

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"
TURNS = 8  # model calls per task: 7 file writes, then finish
USAGE = {"input_tokens": 2000, "output_tokens": 5000, "cache_creation_input_tokens": 500,
         "cache_read_input_tokens": 1000}
CALL_COST = PriceTable().cost(MODEL, Usage(2000, 5000, cache_read_tokens=1000, cache_write_tokens=500))
LIMIT = Decimal("1.00")  # 24 calls cost 24 × $0.083175 ≈ $2: the work cannot fit


def scripted(body: dict) -> dict:
    """Each agent writes TURNS - 1 files of its own, then finishes (the task id is in its prompt)."""
    first = body["messages"][0]["content"]
    prompt = first if isinstance(first, str) else first[0]["text"]
    task = prompt.split(":", 1)[0].removeprefix("# Task ").strip()
    done = sum(1 for m in body["messages"] if m["role"] == "assistant")
    if done < TURNS - 1:
        return turn(tool("write_file", path=f"{task}/part{done}.txt", content=f"{task} {done}\n"), usage=USAGE)
    return turn(tool("finish", summary=f"{task}: {done} parts"), usage=USAGE)


PLAN = {"name": "budget", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": t, "title": f"Parts {t}", "complexity": "medium"} for t in ("t1", "t2", "t3")]}]}


def spent(events) -> Decimal:
    return sum((Decimal(e.cost_exact) for e in events if isinstance(e, ev.CostRecorded)), Decimal(0))


@pytest.mark.parametrize("scope", ["run", "project"])
async def test_a_hard_budget_holds_with_three_agents_and_raising_it_lets_the_run_finish(
        scope, nats_server, database_url, unique, git_repo, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([scripted] * 400) as api:
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 3},
                     agent={"provider": "anthropic", "base_url": api.url, "max_turns": 40},
                     cost={"run_budget_usd": float(LIMIT) if scope == "run" else 0,
                           "budget_limit_usd": float(LIMIT) if scope == "project" else 0, "enforcement": "hard",
                           "optimization_enabled": False, "default_model": MODEL})
        async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            run = started.run_id
            exhausted = await next_event(bus, lambda e: isinstance(e, ev.BudgetExhausted) and e.run_id == run, 120)
            # every agent stops at its next call, and no new attempt starts; an agent that ran ahead
            # of the others (a slow start) may have finished inside the budget, and one whose worktree
            # was still being made may not have been given its slot: which ones is timing. Settled:
            # every task in one of those states, the same on two reads in a row.
            seen: list[tuple] = []

            def settled(es) -> bool:
                state = (_deferred(es), _succeeded(es), _never_admitted(es))
                seen.append(state)
                return (bool(state[0]) and set().union(*state) == {"t1", "t2", "t3"}
                        and len(seen) > 1 and seen[-2] == state)

            try:
                deferred_events = await asyncio.wait_for(_until(bus, run, settled), 60)
            except asyncio.TimeoutError:
                last = await events_of(bus, run)
                pytest.fail(f"not settled in 60 s: (deferred, succeeded, never admitted) = {seen[-1] if seen else None}; "
                            f"events: {[(e.type, getattr(e, 'task_id', '')) for e in last][-40:]}")
            stopped, finished = _deferred(deferred_events), _succeeded(deferred_events)
            events = await events_of(bus, run)
            stopped_at = spent(events)
            print(f"budget test ({scope}): spent ${stopped_at} of a ${LIMIT} limit when the run stopped")
            assert stopped_at <= LIMIT, f"spent ${stopped_at} of a ${LIMIT} budget"
            assert stopped_at > LIMIT / 2  # it did spend (three agents at once, then fewer as room ran out)
            assert all(Decimal(e.cost_exact) == CALL_COST for e in events if isinstance(e, ev.CostRecorded))
            assert exhausted.scope == scope and exhausted.limit_exact == "1"
            assert sum(1 for e in events if isinstance(e, ev.BudgetExhausted)) == 1
            warned = sorted(e.fraction for e in events if isinstance(e, ev.BudgetWarning))
            assert warned[:2] == [0.5, 0.8] and len(warned) == len(set(warned))  # each level once
            assert not [e for e in events if isinstance(e, (ev.TaskFailed, ev.RunFailed, ev.RunCompleted))]
            assert {e.reason for e in deferred_events if isinstance(e, ev.TaskDeferred)} == {"budget"}
            stops = [e for e in events if isinstance(e, ev.AgentFinished) and e.outcome != "success"]
            assert {e.outcome for e in stops} == {"budget"} and {e.task_id for e in stops} == stopped
            # the work so far is kept on each task's branch; an attempt whose first call was already
            # refused (it started after the others had spent the room) has nothing to keep
            for stop in stops:
                if stop.turns:
                    assert stop.commit and "work so far" in git(git_repo, "log", "-1", "--format=%s", stop.commit)
                else:
                    assert stop.commit == "" and stop.cost_exact == "0"
            assert any(stop.turns for stop in stops)
            requests_when_stopped = len(api.requests)
            # `yokeflow run` following the run returns here, saying the budget stopped it
            followed = await asyncio.wait_for(follow_run(bus, started, quiet=True), 30)
            assert followed.event is None and followed.budget_stop.scope == scope
            # the projections show the tasks pending, with the reason
            database = db.Database(database_url)
            try:
                await database.wait_for("ledger", await bus.last_seq(), timeout=30)
                rows = await database.fetch(select(db.tasks).where(db.tasks.c.run_id == run))
            finally:
                await database.dispose()
            pending = [r for r in rows if r["id"] in stopped]
            assert {r["status"] for r in pending} == {"pending"} and all(r["reason"].startswith("budget") for r in pending)
            assert len(api.requests) == requests_when_stopped  # nothing more was asked of the model

            await set_budget(bus, started.project_id, Decimal("5"), run_id=run if scope == "run" else "", set_by="test")
            end = await wait_for_end(bus, run, timeout=180)
            events = await events_of(bus, run)
    assert isinstance(end, ev.RunCompleted), end
    assert spent(events) <= Decimal("5")
    retries = [e for e in events if isinstance(e, ev.TaskReady) and e.attempt == 2]
    assert {e.task_id for e in retries} == stopped and not stopped & finished
    assert all(getattr(e.cost, f"{scope}_budget_usd") == "5" for e in retries)
    for t in ("t1", "t2", "t3"):
        assert git(git_repo, "show", f"main:{t}/part{TURNS - 2}.txt") == f"{t} {TURNS - 2}"


def _deferred(events) -> set[str]:
    return {e.task_id for e in events if isinstance(e, ev.TaskDeferred)}


def _never_admitted(events) -> set[str]:
    """Tasks dispatched whose attempt never got an agent slot (it waits for the budget to be raised)."""
    admitted = {e.task_id for e in events if isinstance(e, ev.AgentAdmitted)}
    return {e.task_id for e in events if isinstance(e, ev.TaskReady)} - admitted


def _succeeded(events) -> set[str]:
    return {e.task_id for e in events if isinstance(e, ev.AgentFinished) and e.outcome == "success"}


async def _until(bus, run_id: str, predicate):
    while True:
        events = await events_of(bus, run_id)
        if predicate(events):
            return events
        await asyncio.sleep(0.2)


def test_the_scripted_costs_are_what_the_test_says():
    assert CALL_COST == Decimal("0.083175") and CALL_COST * 3 * TURNS > LIMIT
    json.dumps(PLAN)
