"""Plans Session 0 produced: read one, approve it. A run starts from an approved plan by id
(POST /api/runs with `plan_id`); a plan sent in the request body is the caller's own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from shared import events as ev
from shared.bus import Bus
from services.gateway.deps import NO_CONTROL, ApiError, BusDep, PlanId
from shared.plan.session0 import PlanNotApprovable, PlanNotFound, approve_plan, plan_history

router = APIRouter(tags=["plans"])


class Approve(BaseModel):
    approved_by: str = Field(default="api", min_length=1, max_length=200, pattern=NO_CONTROL)


def plan_state(plan_id: str, history: list[ev.Event]) -> dict[str, Any]:
    """A plan's state from its events: requested, produced, rejected or approved."""
    produced = next((e for e in reversed(history) if isinstance(e, ev.PlanProduced)), None)
    rejected = next((e for e in reversed(history) if isinstance(e, ev.PlanRejected)), None)
    approved = next((e for e in history if isinstance(e, ev.PlanApproved)), None)
    status = ("approved" if approved and produced else "produced" if produced
              else "rejected" if rejected else "requested")
    return {"plan_id": plan_id, "status": status, "plan": produced.plan if produced else None,
            "source": produced.source if produced else "", "path": produced.path if produced else "",
            "errors": rejected.errors if rejected and not produced else [],
            "approved_by": approved.approved_by if approved else "",
            "approved_at": approved.occurred_at if approved else None}


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
        out.append({**state, "name": plan.get("name", ""), "project_id": history[0].project_id,
                    "tasks": sum(len(e.get("tasks", [])) for e in plan.get("epics", [])),
                    "requested_at": history[0].occurred_at})
    return {"plans": out}


@router.get("/api/plans/{plan_id}")
async def get_plan(plan_id: PlanId, bus: BusDep) -> dict[str, Any]:
    return await plan_or_404(bus, plan_id)


@router.post("/api/plans/{plan_id}/approve")
async def approve(plan_id: PlanId, bus: BusDep, body: Approve | None = None) -> dict[str, Any]:
    try:
        _, newly = await approve_plan(bus, plan_id, (body or Approve()).approved_by)
    except PlanNotFound as exc:
        raise ApiError(404, str(exc), "plan_id") from None
    except PlanNotApprovable as exc:
        raise ApiError(409, str(exc), "plan_id") from None
    return {**await plan_or_404(bus, plan_id), "newly_approved": newly}
