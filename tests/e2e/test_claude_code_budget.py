"""A hard budget holds for the claude-code backend too, although Claude Code makes its own model
calls: its key proxy reserves each call's worst case before it leaves the machine and prices it
from the usage in the answer, so every call is one CostRecorded, the spend never passes the
limit, the step stops at the first call that does not fit, and raising the budget lets it finish."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared import events as ev
from shared.budget_commands import set_budget
from shared.commands import start_run
from shared.llm.pricing import PriceTable
from shared.llm.types import Usage
from tests.conftest import require_tool
from tests.e2e.test_claude_code import claude_code_cli  # noqa: F401
from tests.e2e.test_hostile_agent import API_KEY, Router
from tests.support.fake_anthropic import FakeAnthropic, text, tool, turn
from tests.support.system import config, events_of, next_event, running_system, wait_for_end

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"
USAGE = {"input_tokens": 1000, "output_tokens": 20000}
CALL_COST = PriceTable().cost(MODEL, Usage(1000, 20000))  # $0.303 a call
LIMIT = Decimal("2.00")  # a dozen calls cost $3.6: the work cannot fit
STEPS = 12
SCRIPT = {"parts": [turn(tool("Write", file_path=f"part{i}.txt", content=f"{i}\n"), usage=USAGE)
                    for i in range(STEPS)] + [turn(text("all parts written"), usage=USAGE)]}
PLAN = {"name": "cc-budget", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "parts", "title": "PARTS task", "complexity": "medium", "tests": ["test -f part11.txt"]}]}]}


def spent(events) -> Decimal:
    return sum((Decimal(e.cost_exact) for e in events if isinstance(e, ev.CostRecorded)), Decimal(0))


async def test_claude_code_calls_are_each_reserved_priced_and_stopped_by_a_hard_budget(
        nats_server, database_url, unique, git_repo, monkeypatch, claude_code_cli):  # noqa: F811
    require_tool("bwrap")
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    with FakeAnthropic() as api:
        api.add_turns(*[Router(SCRIPT)] * 80)
        cfg = config(parallel={"strategy": "by_task", "max_attempts": 2},
                     agent={"provider": "claude-code", "base_url": api.url},
                     cost={"run_budget_usd": float(LIMIT), "enforcement": "hard", "optimization_enabled": False,
                           "default_model": MODEL})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            run = started.run_id
            await next_event(bus, lambda e: isinstance(e, ev.TaskDeferred) and e.run_id == run, 180)
            events = await events_of(bus, run)
            answered = len(api.requests)

            stopped_at = spent(events)
            print(f"claude-code budget: {answered} calls, ${stopped_at} of a ${LIMIT} limit when the step stopped")
            costs = [e for e in events if isinstance(e, ev.CostRecorded)]
            assert stopped_at <= LIMIT, f"spent ${stopped_at} of a ${LIMIT} budget"
            assert len(costs) == answered >= 3  # one record per model call, not one per Claude Code step
            assert all(Decimal(c.cost_exact) == CALL_COST and c.model == MODEL for c in costs)
            assert sorted(c.call for c in costs) == list(range(1, answered + 1))
            assert sum(1 for e in events if isinstance(e, ev.BudgetExhausted)) == 1
            [stop] = [e for e in events if isinstance(e, ev.AgentFinished)]
            assert stop.outcome == "budget", stop.error
            assert not [e for e in events if isinstance(e, (ev.TaskFailed, ev.RunFailed, ev.RunCompleted))]

            await set_budget(bus, started.project_id, Decimal("20"), run_id=run, set_by="test")
            end = await wait_for_end(bus, run, timeout=240)
            events = await events_of(bus, run)
    assert isinstance(end, ev.RunCompleted), end
    assert spent(events) == CALL_COST * len([e for e in events if isinstance(e, ev.CostRecorded)]) <= Decimal("20")
