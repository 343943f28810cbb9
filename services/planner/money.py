"""What an attempt's TaskReady says about money (pure): its model, chosen by `select_model` from
the run's settings, the project's history and the budget left, and the budgets the executor
enforces for it (`TaskReady.cost`)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from shared import events as ev
from shared.llm.pricing import usd
from services.planner.models import TIERS, select_model

if TYPE_CHECKING:
    from services.planner.scheduler import RunState, TaskState


def _limits(state: "RunState") -> tuple[Decimal, Decimal]:
    cost = state.settings.cost
    project = state.history.limit_set if state.history.limit_set is not None else Decimal(str(cost.budget_limit_usd))
    run = Decimal(state.run_limit_set) if state.run_limit_set else Decimal(str(cost.run_budget_usd))
    return project, run


def budget_left_fraction(state: "RunState") -> float:
    """The smaller share left of the project's and the run's budget (1.0 with no budget)."""
    project, run = _limits(state)
    left = [max(Decimal(0), (limit - spent) / limit) for limit, spent in
            ((project, state.history.project_spent), (run, state.run_spent_total)) if limit > 0]
    return float(min(left)) if left else 1.0


def attempt_fields(state: "RunState", t: "TaskState", task: Any, *, tries: int) -> dict[str, Any]:
    from shared.plan import task_complexity

    cost = state.settings.cost
    models = dict(cost.models)
    complexity = task_complexity(task)
    selection = select_model(
        complexity=complexity, domain=task.domain, tries=tries, previous_tier=t.last_tier if tries > 1 else "",
        critical=task.id in state.resolution.critical_path, budget_left_fraction=budget_left_fraction(state),
        optimization_enabled=cost.optimization_enabled, default_model=cost.default_model, models=models,
        history=state.history.stats(), min_success_rate=cost.min_success_rate, min_samples=cost.min_samples)
    selection.inputs["complexity_source"] = "task" if task.complexity else "estimated"
    project, run = _limits(state)
    return {
        "model": selection.model,
        "selection": msgspec.convert(selection.as_event_field(), ev.ModelSelection),
        "cost": ev.AttemptBudget(project_budget_usd=usd(project), run_budget_usd=usd(run),
                                 enforcement=cost.enforcement, warn_at=list(cost.warn_at), prices=dict(cost.prices)),
    }


__all__ = ["TIERS", "attempt_fields", "budget_left_fraction"]
