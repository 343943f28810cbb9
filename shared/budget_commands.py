"""The front doors' budget commands (the CLI and the gateway share them). Setting a budget (`yokeflow budget set`, PUT /api/projects/{id}/budget): the shared account
takes the new limit at once (agents in flight see it at their next call), then a BudgetSet event
tells the planner, which starts attempts again for a run the old limit had stopped.

The account rules themselves are in shared/budget.py: executors apply them before every model call.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from shared import budget as accounts
from shared import events as ev
from shared.llm.pricing import usd


class BudgetInputError(ValueError):
    """A budget a person gave that cannot be used; `key` names the field."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def parse_amount(value: Any, key: str = "limit_usd") -> Decimal:
    """USD from text or a number: a finite amount, 0 or more (0: no limit)."""
    if isinstance(value, bool):
        value = "true"
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except InvalidOperation:
        raise BudgetInputError(f"{key}: {value!r} is not an amount of USD; give e.g. 25 or 12.50 (0: no limit)",
                               key) from None
    if not amount.is_finite() or amount < 0:
        raise BudgetInputError(f"{key}: {value!r} must be an amount of USD, 0 or more (0: no limit)", key)
    return amount


async def set_budget(bus, project_id: str, amount: Decimal, *, run_id: str = "", set_by: str = "") -> ev.BudgetSet:
    """The project's budget (all its runs), or with `run_id` that run's budget, becomes `amount`."""
    scope, ident = ("run", run_id) if run_id else ("project", project_id)
    await accounts.set_budget(bus, scope, ident, amount)
    event = ev.BudgetSet(project_id=project_id, aggregate_id=ident, scope=scope, run_id=run_id,
                         limit_exact=usd(amount), set_by=set_by)
    await bus.publish(event)
    return event


async def budget_status(bus, project_id: str, run_id: str = "") -> dict[str, Any]:
    """The accounts as the executors see them: limit, spent, held by calls in flight (decimal strings)."""
    out: dict[str, Any] = {}
    for scope, ident in (("project", project_id), ("run", run_id)):
        if not ident:
            continue
        acct = await accounts.read_account(bus, scope, ident)
        out[scope] = None if acct is None else {
            "limit_usd": acct.limit, "spent_usd": acct.spent, "reserved_usd": acct.reserved,
            "limit_source": acct.limit_source, "exhausted": acct.exhausted,
            "left_fraction": round(accounts.budget_left_fraction(acct), 4)}
    return out
