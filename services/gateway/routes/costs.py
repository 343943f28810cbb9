"""Money: a project's costs grouped as asked (the same object as `yokeflow costs --json`), and its
budgets (the same as `yokeflow budget set|show`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from shared import readmodel
from shared.llm.pricing import usd
from services.gateway.deps import ApiError, BusDep, ConfigDep, DatabaseDep, ProjectId, WaitTimeoutDep
from services.gateway import writes
from shared.budget_commands import BudgetInputError, budget_status, parse_amount, set_budget
from shared.readmodel.costs import cost_report

router = APIRouter(tags=["costs"])


async def _project_or_404(database, project_id: str) -> None:
    if await readmodel.get_project(database, project_id) is None:
        raise ApiError(404, f"no project {project_id!r}: GET /api/projects lists the known projects", "project_id")


async def _run_of_project(database, project_id: str, run_id: str) -> dict[str, Any]:
    run = await readmodel.get_run(database, run_id)
    if run is None or run["project_id"] != project_id:
        raise ApiError(404, f"no run {run_id!r} in project {project_id}: GET /api/projects/{project_id} lists its runs",
                       "run_id")
    return run


@router.get("/api/projects/{project_id}/costs")
async def get_costs(project_id: ProjectId, database: DatabaseDep,
                    by: Literal["task", "epic", "model", "domain", "run"] = "task",
                    run: str | None = Query(default=None, max_length=64, description="one run of the project")
                    ) -> dict[str, Any]:
    """Total and rows, amounts as decimal strings; tokens by kind (input, output, cache write, cache read)."""
    await _project_or_404(database, project_id)
    if run:
        await _run_of_project(database, project_id, run)
    return await cost_report(database, project_id=project_id, run_id=run, by=by)


class SetBudget(BaseModel):
    limit_usd: str | float | int = Field(description="the new limit in USD, e.g. \"25\" or 12.5 (0: no limit)")
    run_id: str = Field(default="", max_length=64, description="set this run's budget instead of the project's")


@router.get("/api/projects/{project_id}/budget")
async def get_budget(project_id: ProjectId, database: DatabaseDep, bus: BusDep, config: ConfigDep,
                     run: str | None = Query(default=None, max_length=64)) -> dict[str, Any]:
    """The project's (and with `run`, the run's) account as the executors see it: limit, spent, reserved,
    remaining (decimal strings; a limit of "0" is none), enforcement, and the latest budget events."""
    await _project_or_404(database, project_id)
    settings = config.run_settings().to_dict()
    if run:
        settings = (await _run_of_project(database, project_id, run))["settings"] or settings
    cost = settings.get("cost") or {}
    status = await budget_status(bus, project_id, run or "")
    configured = {"project": cost.get("budget_limit_usd", 0), "run": cost.get("run_budget_usd", 0)}
    accounts = {scope: _account(status.get(scope), configured[scope]) for scope in ("project", "run")
                if scope == "project" or run}
    events = await readmodel.budget_events(database, project_id, run or "")
    latest = next((e for e in events if e["type"] in ("BudgetExhausted", "BudgetSet")), None)
    return {"project_id": project_id, "run_id": run, **accounts, "enforcement": cost.get("enforcement", "hard"),
            "warn_at": cost.get("warn_at", [0.5, 0.8, 0.95]),
            "exhausted": bool(latest and latest["type"] == "BudgetExhausted"), "events": events}


def _account(acct: dict[str, Any] | None, configured: Any) -> dict[str, Any]:
    """An account with what is left of it; one no call has used yet shows its configured limit."""
    if acct is None:
        acct = {"limit_usd": usd(Decimal(str(configured or 0))), "spent_usd": "0", "reserved_usd": "0",
                "limit_source": "config", "exhausted": False, "left_fraction": 1.0, "used": False}
    else:
        acct = {**acct, "used": True}
    limit = Decimal(acct["limit_usd"])
    left = limit - Decimal(acct["spent_usd"]) - Decimal(acct["reserved_usd"])
    return {**acct, "remaining_usd": usd(max(left, Decimal(0))) if limit > 0 else None}


@router.put("/api/projects/{project_id}/budget")
async def put_budget(project_id: ProjectId, body: SetBudget, database: DatabaseDep, bus: BusDep,
                     wait_timeout: WaitTimeoutDep, wait: bool = False) -> dict[str, Any]:
    """A new limit for the project (all its runs) or one run: a run the old limit stopped goes on."""
    try:
        amount = parse_amount(body.limit_usd)
    except BudgetInputError as exc:
        raise ApiError(422, str(exc), exc.key) from None
    await _project_or_404(database, project_id)
    if body.run_id:
        await _run_of_project(database, project_id, body.run_id)
    event = await set_budget(bus, project_id, amount, run_id=body.run_id, set_by="api")
    landed = await writes.settle(bus, database, event, wait=wait, timeout=wait_timeout)
    return {"project_id": project_id, "run_id": body.run_id or None, "scope": event.scope,
            "limit_usd": event.limit_exact, **landed}
