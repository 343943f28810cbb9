"""Model choice per attempt (pure): `select_model(inputs)` picks a tier and says why.

Rules, in order (docs/costs.md):
1. `cost.optimization_enabled: false` → always `cost.default_model`.
2. Under 10 % of the budget left → the cheapest tier.
3. The base tier: from history, the cheapest model whose success rate on (domain, complexity) is at
   least `min_success_rate` over at least `min_samples` finished attempts; without such history,
   critical-path or high-complexity work gets the strongest tier, low complexity the cheapest, the
   rest `default_model`.
4. Exploring (first tries of work that is neither critical nor high complexity): a tier cheaper than
   the base is tried first until history judges it on (domain, complexity): proven (rule 3) or
   ruled out (even the optimistic end of its success rate, a Wilson bound, is under
   `min_success_rate` after at least `min_samples` attempts). A failure costs a cheap attempt and
   the retry escalates.
5. A retry escalates one tier above the tier the previous try used.
`History` folds finished attempts into success rate and mean cost per (domain, complexity, model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from shared import events as ev

TIERS = ("haiku", "sonnet", "opus")  # cheapest first
LOW_BUDGET_FRACTION = 0.10
WILSON_Z = 1.28  # ~80 % one-sided: a tier is ruled out once it is probably below the bar
COUNTED_OUTCOMES = {"success", "failure"}  # cancelled, throttled or budget-stopped attempts say nothing of the model


@dataclass
class Stats:
    attempts: int = 0
    successes: int = 0
    cost: Decimal = Decimal(0)

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def ruled_out(self, min_rate: float, min_samples: int) -> bool:
        """Enough attempts, and even the optimistic (Wilson upper) bound of the rate is under the bar."""
        n = self.attempts
        if n < min_samples:
            return False
        p, z = self.success_rate, WILSON_Z
        upper = (p + z * z / (2 * n) + z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
        return upper < min_rate

    @property
    def mean_cost(self) -> Decimal:
        return self.cost / self.attempts if self.attempts else Decimal(0)


@dataclass
class History:
    """Finished attempts of a project, keyed by their identity (run, task, attempt): folding an
    event twice changes nothing."""

    ready: dict[tuple[str, str, int], tuple[str, str, str]] = field(default_factory=dict)  # -> domain, complexity, model
    finished: dict[tuple[str, str, int], tuple[str, Decimal]] = field(default_factory=dict)  # -> outcome, cost
    spent: dict[str, Decimal] = field(default_factory=dict)  # CostRecorded by event id (project spend)
    limit_set: Decimal | None = None  # the project budget a person set (BudgetSet), if any
    # kept as events arrive (every TaskReady reads them: summing the whole history each time grew
    # with the project, a third of the planner's work at 1,000 tasks)
    project_spent: Decimal = Decimal(0)
    _stats: dict[tuple[str, str, str], Stats] = field(default_factory=dict)
    _counted: dict[tuple[str, str, int], tuple[tuple[str, str, str], bool, Decimal]] = field(default_factory=dict)

    def apply(self, e: ev.Event) -> None:
        match e:
            case ev.TaskReady():
                key = (e.run_id, e.task_id, e.attempt)
                self.ready[key] = (e.domain, e.complexity, e.model)
                self._recount(key)
            case ev.AgentFinished():
                key = (e.run_id, e.task_id, e.attempt)
                cost = Decimal(e.cost_exact) if e.cost_exact else Decimal(str(e.cost_usd))
                self.finished[key] = (e.outcome, cost)
                self._recount(key)
            case ev.CostRecorded():
                amount = Decimal(e.cost_exact) if e.cost_exact else Decimal(str(e.cost_usd))
                self.project_spent += amount - self.spent.get(e.event_id, Decimal(0))
                self.spent[e.event_id] = amount
            case ev.BudgetSet() if e.scope == "project":
                self.limit_set = Decimal(e.limit_exact)

    def _recount(self, key: tuple[str, str, int]) -> None:
        """Take the attempt's contribution out of the stats and put in what it is now (a re-fold of the
        same event puts back what it took)."""
        if (old := self._counted.pop(key, None)) is not None:
            s = self._stats[old[0]]
            s.attempts, s.successes, s.cost = s.attempts - 1, s.successes - old[1], s.cost - old[2]
            if not s.attempts:
                del self._stats[old[0]]
        finished, ready = self.finished.get(key), self.ready.get(key)
        if finished is None or ready is None or finished[0] not in COUNTED_OUTCOMES:
            return
        success = finished[0] == "success"
        s = self._stats.setdefault(ready, Stats())
        s.attempts, s.successes, s.cost = s.attempts + 1, s.successes + success, s.cost + finished[1]
        self._counted[key] = (ready, success, finished[1])

    def stats(self) -> Mapping[tuple[str, str, str], Stats]:
        """Per (domain, complexity, model) of the finished attempts counted (read-only: kept up to date)."""
        return self._stats


@dataclass(frozen=True)
class Selection:
    model: str                 # the model id the attempt uses
    tier: str                  # haiku | sonnet | opus, or "" for a default_model that is a model id
    reasons: list[str]
    inputs: dict[str, Any]

    def as_event_field(self) -> dict[str, Any]:
        return {"tier": self.tier, "model": self.model, "reasons": list(self.reasons), "inputs": dict(self.inputs)}


def select_model(*, complexity: str, domain: str = "general", tries: int = 1, previous_tier: str = "",
                 critical: bool = False,
                 budget_left_fraction: float = 1.0, optimization_enabled: bool = True,
                 default_model: str = "sonnet", models: Mapping[str, str] | None = None,
                 history: Mapping[tuple[str, str, str], Stats] | None = None,
                 min_success_rate: float = 0.85, min_samples: int = 5) -> Selection:
    """The model for one attempt. `tries`: this attempt's number among the task's real tries
    (1 = first); `previous_tier`: the tier of the task's previous try; `history`: stats per
    (domain, complexity, model id)."""
    models = dict(models or {"opus": "claude-opus-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"})
    inputs = {"complexity": complexity, "domain": domain, "tries": tries, "critical": critical,
              "budget_left_fraction": round(budget_left_fraction, 4), "optimization_enabled": optimization_enabled,
              "default_model": default_model}

    def pick(tier: str, reasons: list[str]) -> Selection:
        return Selection(models[tier], tier, reasons, inputs)

    if not optimization_enabled:
        if default_model in TIERS:
            return pick(default_model, ["cost.optimization_enabled is false: cost.default_model"])
        return Selection(default_model, "", ["cost.optimization_enabled is false: cost.default_model"], inputs)
    if budget_left_fraction < LOW_BUDGET_FRACTION:
        return pick(TIERS[0], [f"under {LOW_BUDGET_FRACTION:.0%} of the budget left: the cheapest tier"])
    default_tier = default_model if default_model in TIERS else _tier_of(default_model, models) or "sonnet"
    reasons: list[str] = []
    proven = _cheapest_proven(domain, complexity, models, history or {}, min_success_rate, min_samples)
    if proven is not None:
        base, stats = proven
        inputs["history"] = {"model": models[base], "attempts": stats.attempts,
                             "success_rate": round(stats.success_rate, 4), "mean_cost_usd": str(stats.mean_cost)}
        reasons.append(f"history: {models[base]} succeeded on {stats.successes}/{stats.attempts} "
                       f"{domain}/{complexity} attempts (at least {min_success_rate:.0%} over {min_samples})")
    elif critical or complexity == "high":
        base = TIERS[-1]
        reasons.append("critical-path work: the strongest tier" if critical else
                       "high complexity: the strongest tier")
    elif complexity == "low":
        base = TIERS[0]
        reasons.append("low complexity: the cheapest tier")
    else:
        base = default_tier
        reasons.append(f"{complexity} complexity: cost.default_model ({default_model})")
    if tries > 1:
        before = TIERS.index(previous_tier) if previous_tier in TIERS else TIERS.index(base) + tries - 2
        index = min(max(before + 1, 0), len(TIERS) - 1)
        reasons.append(f"try {tries}: one tier above the previous try's"
                       + (f" ({previous_tier})" if previous_tier in TIERS else ""))
        return pick(TIERS[index], reasons)
    if proven is None and not critical and complexity != "high":
        stats_of = history or {}
        for tier in TIERS[:TIERS.index(base)]:
            seen = stats_of.get((domain, complexity, models[tier])) or Stats()
            if not seen.ruled_out(min_success_rate, min_samples):
                reasons.append(f"exploring: {models[tier]} is not judged yet on {domain}/{complexity} "
                               f"({seen.successes}/{seen.attempts} succeeded)")
                return pick(tier, reasons)
    return pick(base, reasons)


def _tier_of(model: str, models: Mapping[str, str]) -> str | None:
    return next((t for t in TIERS if models.get(t) == model), None)


def _cheapest_proven(domain: str, complexity: str, models: Mapping[str, str],
                     history: Mapping[tuple[str, str, str], Stats], min_rate: float,
                     min_samples: int) -> tuple[str, Stats] | None:
    for tier in TIERS:  # cheapest first
        stats = history.get((domain, complexity, models[tier]))
        if stats and stats.attempts >= min_samples and stats.success_rate >= min_rate:
            return tier, stats
    return None
