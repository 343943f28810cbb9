"""The PRD's project-scoped parallel routes: start a run, its status, its batches, cancel it.
Over the same commands as the CLI (shared/commands.py) and the same read model (shared/readmodel.py)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from shared import commands, readmodel
from services.gateway import writes
from services.gateway.deps import (NO_CONTROL, ApiError, BusDep, ConfigDep, DatabaseDep, ProjectId, WaitTimeoutDep)
from services.gateway.routes.projects import project_or_404
from services.gateway.routes.runs import RUN_ENDED, StartRun, _no_nul, start_command

router = APIRouter(tags=["parallel"])

RunQuery = Query(default=None, min_length=1, max_length=64, pattern=NO_CONTROL,
                 description="a run of the project (default: its latest run)")


class ParallelStart(BaseModel):
    plan: dict[str, Any] | None = Field(default=None, description="the plan object (docs/plan-format.md)")
    plan_id: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                         description="or: the id of an approved plan Session 0 produced")
    max_concurrency: int | None = Field(default=None, ge=1, le=64, description="agents at once (default: config)")
    strategy: Literal["by_epic", "by_task", "smart"] | None = None
    batch_barrier: bool | None = Field(default=None, description="run batch by batch, as the PRD describes")
    budget_usd: float | None = Field(default=None, gt=0, le=1_000_000, description="the run's hard budget in USD")

    @field_validator("plan")
    @classmethod
    def _storable(cls, value: Any, info: Any) -> Any:
        _no_nul(value, info.field_name)  # refused here as a 422 on `plan`, as POST /api/runs does
        return value


class ParallelCancel(BaseModel):
    run_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=NO_CONTROL,
                               description="one run (default: every running run of the project)")
    reason: str = Field(default="cancelled by a person", max_length=2000)


@router.post("/api/projects/{project_id}/parallel/start", status_code=201)
async def start(project_id: ProjectId, body: ParallelStart, bus: BusDep, database: DatabaseDep, config: ConfigDep,
                wait_timeout: WaitTimeoutDep, wait: bool = False) -> JSONResponse:
    """Start a run of a plan on the project's repository (the project exists once a run was started on it)."""
    project = await project_or_404(database, project_id)
    parallel = {k: v for k, v in (("max_concurrency", body.max_concurrency), ("strategy", body.strategy),
                                  ("batch_barrier", body.batch_barrier)) if v is not None}
    settings: dict[str, dict[str, Any]] = {"parallel": parallel} if parallel else {}
    if body.budget_usd is not None:
        settings["cost"] = {"run_budget_usd": body.budget_usd}
    request = StartRun(plan=body.plan, plan_id=body.plan_id, repo_path=project["repo_path"], settings=settings,
                       target_branch=project.get("target_branch") or None)
    started = await start_command(request, bus, config)
    landed = await writes.settle(bus, database, started, wait=wait, timeout=wait_timeout)
    settings_now = started.settings.to_dict()
    return JSONResponse({"run_id": started.run_id, "project_id": started.project_id,
                         "settings": {"parallel": settings_now["parallel"],
                                      "budget_usd": settings_now["cost"]["run_budget_usd"]},
                         **landed}, status_code=201, headers={"Location": f"/api/runs/{started.run_id}"})


async def _run_of(database: DatabaseDep, project_id: str, run_id: str | None) -> dict[str, Any]:
    await project_or_404(database, project_id)
    runs = await readmodel.list_runs(database, project_id, limit=1000)
    if run_id:
        runs = [r for r in runs if r["id"] == run_id]
        if not runs:
            raise ApiError(404, f"project {project_id} has no run {run_id!r}: GET /api/projects/{project_id} lists them",
                           "run")
    if not runs:
        raise ApiError(404, f"project {project_id} has no run yet: POST /api/projects/{project_id}/parallel/start",
                       "project_id")
    detail = await readmodel.run_detail(database, runs[0]["id"])
    assert detail is not None
    return detail


@router.get("/api/projects/{project_id}/parallel/status")
async def status(project_id: ProjectId, database: DatabaseDep, run: str | None = RunQuery) -> dict[str, Any]:
    """The run's state, task counts, running agents, cost and ETA."""
    detail = await _run_of(database, project_id, run)
    r, totals = detail["run"], detail["totals"]
    return {"project_id": project_id, "run_id": r["id"], "status": r["status"], "plan_name": r["plan_name"],
            "reason": r["reason"], "started_at": r["started_at"], "ended_at": r["ended_at"],
            "settings": {"parallel": (r.get("settings") or {}).get("parallel", {}),
                         "budget_usd": ((r.get("settings") or {}).get("cost") or {}).get("run_budget_usd")},
            "tasks": {"total": totals["tasks"], "by_state": totals["by_state"]},
            "batches": {"total": len(detail["batches"]),
                        "finished": sum(1 for b in detail["batches"] if b["finished"] == b["total"])},
            "cost_usd": totals["cost_usd"], "running": totals["running"], "eta": totals["eta"],
            "elapsed_s": totals["elapsed_s"], "ledger_position": detail["ledger_position"]}


@router.get("/api/projects/{project_id}/parallel/batches")
async def batches(project_id: ProjectId, database: DatabaseDep, run: str | None = RunQuery) -> dict[str, Any]:
    """The run's batches (Kahn levels of the dependency graph) with each task's state."""
    detail = await _run_of(database, project_id, run)
    tasks = {t["id"]: t for t in detail["tasks"]}
    return {"project_id": project_id, "run_id": detail["run"]["id"],
            "batch_barrier": bool(((detail["run"].get("settings") or {}).get("parallel") or {}).get("batch_barrier")),
            "batches": [{**b, "tasks": [{"id": i, "title": tasks[i]["title"] if i in tasks else "",
                                         "epic_id": tasks[i]["epic_id"] if i in tasks else "",
                                         "state": tasks[i]["state"] if i in tasks else "pending"}
                                        for i in b["task_ids"]]} for b in detail["batches"]]}


@router.post("/api/projects/{project_id}/parallel/cancel", status_code=202)
async def cancel(project_id: ProjectId, bus: BusDep, database: DatabaseDep, wait_timeout: WaitTimeoutDep,
                 body: ParallelCancel | None = None, wait: bool = False) -> dict[str, Any]:
    """Cancel one running run of the project, or all of them."""
    body = body or ParallelCancel()
    await project_or_404(database, project_id)
    runs = await readmodel.list_runs(database, project_id, limit=1000)
    if body.run_id:
        chosen = [r for r in runs if r["id"] == body.run_id]
        if not chosen:
            raise ApiError(404, f"project {project_id} has no run {body.run_id!r}", "run_id")
        if chosen[0]["status"] in RUN_ENDED:
            raise ApiError(409, f"run {body.run_id} is already {chosen[0]['status']}", "run_id")
    else:
        chosen = [r for r in runs if r["status"] not in RUN_ENDED]
        if not chosen:
            raise ApiError(409, f"project {project_id} has no running run to cancel", "project_id")
    landed: dict[str, Any] = {}
    for r in chosen:
        cancelled = await commands.cancel_run(bus, project_id, r["id"], body.reason)
        landed = await writes.settle(bus, database, cancelled, wait=wait, timeout=wait_timeout)
    return {"project_id": project_id, "cancelled": [r["id"] for r in chosen], "status": "cancelling", **landed}
