"""Plans Session 0 produced: read one, edit it (each edit is a new version), approve a version. A
run starts from an approved plan by id (POST /api/runs with `plan_id`); a plan sent in the request
body is the caller's own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shared import events as ev
from shared.bus import Bus
from shared.plan import versions
from shared.plan.session0 import (PlanEditConflict, PlanNotApprovable, PlanNotFound, approve_plan, edit_plan,
                                  plan_history)
from services.gateway.deps import NO_CONTROL, ApiError, BusDep, PlanId

router = APIRouter(tags=["plans"])

plan_state = versions.plan_state  # the one reading of a plan's events (the MCP server uses it too)

TaskRef = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CONTROL)]


class Approve(BaseModel):
    approved_by: str = Field(default="api", min_length=1, max_length=200, pattern=NO_CONTROL)
    version: int | None = Field(default=None, ge=1, le=100_000,
                                description="the version reviewed; refused (409) when the plan has a newer one")


class EditTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=500, pattern=NO_CONTROL)
    description: str | None = Field(default=None, max_length=20_000, pattern=r"^[^\x00]*$")
    depends_on: list[TaskRef] | None = Field(default=None, max_length=500)
    complexity: Literal["low", "medium", "high"] | None = None


class EditPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_version: int = Field(ge=1, le=100_000, description="the version the person edited (GET /api/plans/{id}: version)")
    edited_by: str = Field(default="api", min_length=1, max_length=200, pattern=NO_CONTROL)
    tasks: dict[TaskRef, EditTask] = Field(default_factory=dict, max_length=2000,
                                       description="task id -> the fields to change (title, description, depends_on, complexity)")
    remove: list[TaskRef] = Field(default_factory=list, max_length=2000, description="ids of tasks to take out of the plan")


async def plan_or_404(bus: Bus, plan_id: str) -> dict[str, Any]:
    history = await plan_history(bus, plan_id)
    if not history:
        raise ApiError(404, f"no plan {plan_id!r}: give the id `yokeflow plan create` printed", "plan_id")
    return plan_state(plan_id, history)


@router.get("/api/plans")
async def list_plans(bus: BusDep, limit: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
    """Session 0's plans, newest first, with their state (the plan itself: GET /api/plans/{plan_id})."""
    histories: dict[str, list[ev.Event]] = {}
    async for d in bus.read([bus.subjects.aggregate("*", "plan", "*")]):
        histories.setdefault(d.event.aggregate_id, []).append(d.event)
    out = []
    for plan_id, history in reversed(list(histories.items())[-limit:]):
        state = plan_state(plan_id, history)
        plan = state.pop("plan") or {}
        state.pop("versions")
        out.append({**state, "name": plan.get("name", ""), "project_id": history[0].project_id,
                    "tasks": sum(len(e.get("tasks", [])) for e in plan.get("epics", [])),
                    "requested_at": history[0].occurred_at})
    return {"plans": out}


@router.get("/api/plans/{plan_id}")
async def get_plan(plan_id: PlanId, bus: BusDep) -> dict[str, Any]:
    """The plan's latest version, its status (approved: the latest version is), and every version."""
    return await plan_or_404(bus, plan_id)


@router.post("/api/plans/{plan_id}/versions", status_code=201)
async def edit(plan_id: PlanId, body: EditPlan, bus: BusDep) -> JSONResponse:
    """A person's edit of the latest version (titles, descriptions, dependencies, complexity, removed
    tasks), checked like Session 0's output (a cycle or an unknown dependency: 422 naming the field),
    recorded as the next version; it needs approving (POST …/approve with its `version`)."""
    edit = versions.PlanEdit(tasks={tid: versions.TaskEdit(**c.model_dump(exclude_none=True))
                                    for tid, c in body.tasks.items()}, remove=list(body.remove))
    try:
        made = await edit_plan(bus, plan_id, edit, base_version=body.base_version, edited_by=body.edited_by)
    except PlanNotFound as exc:
        raise ApiError(404, str(exc), "plan_id") from None
    except (PlanNotApprovable, PlanEditConflict) as exc:
        raise ApiError(409, str(exc), "base_version" if isinstance(exc, PlanEditConflict) else "plan_id") from None
    except versions.EditRefused as exc:
        raise ApiError(422, str(exc), exc.field, problems=exc.problems) from None
    state = await plan_or_404(bus, plan_id)
    return JSONResponse({**state, "new_version": made.version}, status_code=201,
                        headers={"Location": f"/api/plans/{plan_id}"})


@router.post("/api/plans/{plan_id}/approve")
async def approve(plan_id: PlanId, bus: BusDep, body: Approve | None = None) -> dict[str, Any]:
    """Approve the latest version (or `version`, which must be the latest)."""
    body = body or Approve()
    try:
        _, newly = await approve_plan(bus, plan_id, body.approved_by, version=body.version)
    except PlanNotFound as exc:
        raise ApiError(404, str(exc), "plan_id") from None
    except PlanNotApprovable as exc:
        raise ApiError(409, str(exc), "version" if body.version else "plan_id") from None
    return {**await plan_or_404(bus, plan_id), "newly_approved": newly}
