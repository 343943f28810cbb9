"""The shared budget accounts on real JetStream: many executors reserving at once never hold more
than the limit; soft enforcement only warns; a raised limit is seen at once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from shared import events as ev
from shared.budget import BudgetGate, BudgetRefused, read_account, set_budget
from shared.bus import Bus

pytestmark = pytest.mark.integration


def ready(run="r1", task="t"):
    return ev.TaskReady(project_id="p", aggregate_id=f"{run}-{task}", run_id=run, task_id=task, attempt=1)


async def test_concurrent_reservations_from_three_connections_never_pass_the_limit(nats_server, unique, bus):
    # three executors: three connections to the same stream and bucket
    others = [await Bus.connect(nats_server.url, identity="executor", prefix=f"t{unique}", stream=f"EV_{unique}",
                                log_stream=f"LOG_{unique}") for _ in range(2)]
    try:
        cost = ev.AttemptBudget(project_budget_usd="0", run_budget_usd="1.00", enforcement="hard")
        gates = [BudgetGate(b, ready(task=f"t{i}"), cost) for i, b in enumerate([bus, *others])]

        async def take(gate):
            try:
                return await gate.reserve(Decimal("0.10"))
            except BudgetRefused:
                return None

        holds = await asyncio.gather(*[take(gates[i % 3]) for i in range(30)])
        assert sum(h is not None for h in holds) == 10
        account = await read_account(bus, "run", "r1")
        assert Decimal(account.reserved) == Decimal("1.00") and account.exhausted
        exhausted = [d.event async for d in bus.read() if isinstance(d.event, ev.BudgetExhausted)]
        assert len(exhausted) == 1 and exhausted[0].scope == "run"  # once, however many were refused

        # settling with the real (smaller) cost frees room; raising the limit is seen at once
        await asyncio.gather(*[gates[0].settle(h, Decimal("0.01")) for h in holds if h is not None])
        account = await read_account(bus, "run", "r1")
        assert (account.reserved, account.spent) == ("0", "0.1")
        await set_budget(bus, "run", "r1", Decimal("0.15"))
        assert await take(gates[1]) is None  # 0.10 spent + 0.10 > 0.15
        await set_budget(bus, "run", "r1", Decimal("5"))
        assert await take(gates[2]) is not None
    finally:
        for b in others:
            await b.close()


async def test_soft_enforcement_warns_at_each_level_once_and_never_refuses(bus):
    gate = BudgetGate(bus, ready("r2"), ev.AttemptBudget(project_budget_usd="0", run_budget_usd="1", enforcement="soft"))
    for _ in range(4):
        hold = await gate.reserve(Decimal("0.50"))  # more than the limit: made anyway under soft
        await gate.settle(hold, Decimal("0.30"))
    account = await read_account(bus, "run", "r2")
    assert account.spent == "1.2" and not account.exhausted
    alerts = [d.event async for d in bus.read() if d.event.type.startswith("Budget")]
    assert [(a.type, a.fraction) for a in alerts] == [("BudgetWarning", 0.5), ("BudgetWarning", 0.8),
                                                      ("BudgetWarning", 0.95)]
    assert alerts[-1].spent_exact == "1.2" and alerts[-1].limit_exact == "1"
