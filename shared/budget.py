"""Hard budgets that hold under parallelism: one account per project and per run in a JetStream
key-value bucket, changed only by compare-and-set on its revision.

Before a model call an agent *reserves* the call's worst case on every account that applies; the
reservation is refused (under `enforcement: hard`) when spent + reserved + worst case would pass
the limit. When the call returns it *settles*: the reservation goes, the real cost is added. Every
executor sees the same accounts at once, so three agents cannot each spend the last dollar.

The account rules are pure functions (`reserve`, `settle`, `set_limit`); `BudgetGate` applies them
through `Bus.kv_get` / `Bus.kv_swap` and publishes BudgetWarning / BudgetExhausted once per level.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from shared import events as ev
from shared.llm.pricing import usd

BUCKET = "BUDGETS"
ZERO = Decimal(0)
DEFAULT_WARN_AT = (0.5, 0.8, 0.95)


class Account(msgspec.Struct, kw_only=True):
    """One budget's state. Amounts are decimal strings (exact); limit "0" means no limit."""

    limit: str = "0"
    limit_source: str = "config"  # config: follows cost.*_usd | set: a person set it (wins over config)
    spent: str = "0"
    reserved: str = "0"
    warned: list[float] = []      # warning levels already announced for this limit
    exhausted: bool = False       # BudgetExhausted announced for this limit

    @property
    def limit_d(self) -> Decimal:
        return Decimal(self.limit)

    @property
    def spent_d(self) -> Decimal:
        return Decimal(self.spent)

    @property
    def reserved_d(self) -> Decimal:
        return Decimal(self.reserved)


def account_key(scope: str, ident: str) -> str:
    return f"{scope}.{ev.subject_token(ident)}"


# ---------------------------------------------------------------- pure rules
def follow_config(acct: Account, configured: Decimal) -> Account:
    """An account whose limit came from config follows the config; one a person set keeps it."""
    if acct.limit_source == "config" and acct.limit_d != configured:
        return set_limit(acct, configured, source="config")
    return acct


def set_limit(acct: Account, limit: Decimal, *, source: str = "set") -> Account:
    """A new limit: warnings and exhaustion are announced again for it as they are crossed."""
    fraction = float(acct.spent_d / limit) if limit > 0 else 0.0
    return msgspec.structs.replace(acct, limit=usd(limit), limit_source=source, exhausted=False,
                                   warned=[w for w in acct.warned if w <= fraction])


def reserve(acct: Account, amount: Decimal, *, hard: bool) -> tuple[Account, bool]:
    """(the account after reserving `amount`, whether it fits). Under hard enforcement a reservation
    that does not fit is not made; a limit of 0 always fits."""
    limit = acct.limit_d
    fits = limit <= 0 or acct.spent_d + acct.reserved_d + amount <= limit
    if not fits and hard:
        return acct, False
    return msgspec.structs.replace(acct, reserved=usd(acct.reserved_d + amount)), fits


def release(acct: Account, held: Decimal, actual: Decimal) -> Account:
    """Settle a reservation of `held` with the call's real cost `actual`."""
    return msgspec.structs.replace(acct, reserved=usd(max(ZERO, acct.reserved_d - held)),
                                   spent=usd(acct.spent_d + actual))


def crossed(acct: Account, warn_at: tuple[float, ...] | list[float]) -> list[float]:
    """Warning levels the spend has reached that were not announced yet."""
    limit = acct.limit_d
    if limit <= 0:
        return []
    fraction = acct.spent_d / limit
    return [w for w in sorted(warn_at) if Decimal(str(w)) <= fraction and w not in acct.warned]


def budget_left_fraction(acct: Account) -> float:
    limit = acct.limit_d
    return 1.0 if limit <= 0 else max(0.0, float((limit - acct.spent_d) / limit))


# ---------------------------------------------------------------- the gate
@dataclass(frozen=True)
class Scope:
    name: str          # "project" | "run"
    key: str
    configured: Decimal  # the limit the run's settings give (followed unless a person set one)


@dataclass
class Hold:
    amount: Decimal
    keys: list[str]


class BudgetRefused(Exception):
    """No room for the next call: the agent stops cleanly and the task goes back to pending."""


def _decode(raw: bytes | None) -> Account:
    return msgspec.json.decode(raw, type=Account) if raw else Account()


class BudgetGate:
    """Reservations and settlements for one attempt's model calls (used by the agent loop)."""

    def __init__(self, bus, origin: ev.TaskReady, cost: ev.AttemptBudget):
        self.bus = bus
        self.origin = origin
        self.hard = cost.enforcement == "hard"
        self.warn_at = tuple(cost.warn_at or DEFAULT_WARN_AT)
        self.scopes = [Scope("project", account_key("project", origin.project_id),
                             Decimal(cost.project_budget_usd or 0)),
                       Scope("run", account_key("run", origin.run_id), Decimal(cost.run_budget_usd or 0))]

    async def _change(self, scope: Scope, change) -> tuple[Account, Any]:
        """Apply `change(account) -> (account, result)` atomically (compare-and-set, retried)."""
        for _ in range(200):
            raw, revision = await self.bus.kv_get(BUCKET, scope.key)
            current = _decode(raw)
            if revision == 0:
                current = Account(limit=usd(scope.configured))
            current = follow_config(current, scope.configured)
            new, result = change(current)
            if await self.bus.kv_swap(BUCKET, scope.key, msgspec.json.encode(new), revision) is not None:
                return new, result
            await asyncio.sleep(0.002)
        raise RuntimeError(f"budget account {scope.key}: too many concurrent writers, try again")

    async def reserve(self, amount: Decimal) -> Hold:
        """Hold `amount` on every account, or none: BudgetRefused names the budget that has no room."""
        held: list[Scope] = []
        for scope in self.scopes:
            acct, fits = await self._change(scope, lambda a: reserve(a, amount, hard=self.hard))
            if fits:
                held.append(scope)
                continue
            if not self.hard:  # soft: the call goes ahead; the warnings tell
                held.append(scope)
                continue
            for done in held:  # all or nothing: give back what this call held elsewhere
                await self._change(done, lambda a: (release(a, amount, ZERO), None))
            await self._exhausted(scope, amount)
            raise BudgetRefused(
                f"{scope.name} budget of ${acct.limit} has no room for the next model call (worst case "
                f"${usd(amount)}; spent ${acct.spent}, held by calls in flight ${acct.reserved}): raise it with "
                f"`yokeflow budget set{' --run ' + self.origin.run_id if scope.name == 'run' else ''} USD`")
        return Hold(amount, [s.key for s in held])

    async def settle(self, hold: Hold, actual: Decimal) -> None:
        for scope in self.scopes:
            if scope.key not in hold.keys:
                continue

            def apply(a: Account) -> tuple[Account, list[float]]:
                a = release(a, hold.amount, actual)
                levels = crossed(a, self.warn_at)
                return msgspec.structs.replace(a, warned=sorted({*a.warned, *levels})), levels

            acct, levels = await self._change(scope, apply)
            for level in levels:
                await self._announce(ev.BudgetWarning, scope, acct, level)

    async def _exhausted(self, scope: Scope, amount: Decimal) -> None:
        def mark(a: Account) -> tuple[Account, bool]:
            first = not a.exhausted
            return msgspec.structs.replace(a, exhausted=True), first

        acct, first = await self._change(scope, mark)
        if first:
            await self._announce(ev.BudgetExhausted, scope, acct, 1.0)

    async def _announce(self, cls, scope: Scope, acct: Account, level: float) -> None:
        o = self.origin
        aggregate = o.project_id if scope.name == "project" else o.run_id
        alert = o.caused(cls, aggregate_id=aggregate, run_id=o.run_id, scope=scope.name, fraction=level,
                         spent_usd=float(acct.spent_d), limit_usd=float(acct.limit_d),
                         spent_exact=acct.spent, limit_exact=acct.limit)
        # one per (account, limit, level): a repeat inside the dedupe window is dropped
        await self.bus.publish(alert, msg_id=f"{scope.key}:{acct.limit}:{cls.__name__}:{level}")


async def read_account(bus, scope: str, ident: str) -> Account | None:
    raw, revision = await bus.kv_get(BUCKET, account_key(scope, ident))
    return _decode(raw) if revision else None


async def set_budget(bus, scope: str, ident: str, limit: Decimal) -> Account:
    """A person sets a budget: the account takes it at once (in-flight reservations see it)."""
    key = account_key(scope, ident)
    for _ in range(200):
        raw, revision = await bus.kv_get(BUCKET, key)
        new = set_limit(_decode(raw), limit, source="set")
        if await bus.kv_swap(BUCKET, key, msgspec.json.encode(new), revision) is not None:
            return new
        await asyncio.sleep(0.002)
    raise RuntimeError(f"budget account {key}: too many concurrent writers, try again")
