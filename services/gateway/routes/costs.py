"""Money: a project's costs grouped as asked (the same object as `yokeflow costs --json`), and its
budgets (the same as `yokeflow budget set|show`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from shared import readmodel
from services.gateway.deps import ApiError, BusDep, DatabaseDep, ProjectId, WaitTimeoutDep
from services.gateway import writes
from shared.budget_commands import BudgetInputError, budget_status, parse_amount, set_budget
from shared.readmodel.costs import cost_report

router = APIRouter(tags=["costs"])


async def _project_or_404(database, project_id: str) -> None:
    if await readmodel.get_project(database, project_id) is None:
        raise ApiError(404, f"no project {project_id!r}: GET /api/projects lists the known projects", "project_id")


async def _run_of_project(database, project_id: str, run_id: str) -> None:
    run = await readmodel.get_run(database, run_id)
    if run is None or run["project_id"] != project_id:
        raise ApiError(404, f"no run {run_id!r} in project {project_id}: GET /api/projects/{project_id} lists its runs",
                       "run_id")


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
async def get_budget(project_id: ProjectId, database: DatabaseDep, bus: BusDep,
                     run: str | None = Query(default=None, max_length=64)) -> dict[str, Any]:
    await _project_or_404(database, project_id)
    if run:
        await _run_of_project(database, project_id, run)
    return {"project_id": project_id, "run_id": run, **await budget_status(bus, project_id, run or "")}


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
