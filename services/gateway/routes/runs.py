"""Runs: list, read (with totals and ETA), start, cancel, and the run's event history."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from shared import commands
from shared.config import ConfigError, parse_config
from shared import readmodel
from services.gateway import writes
from services.gateway.deps import (NO_CONTROL, NO_CONTROL_OR_EMPTY, SEQ_MAX, ApiError, BusDep, ConfigDep, DatabaseDep,
                                   RunId, WaitTimeoutDep)
from services.gateway.routes import plans

router = APIRouter(tags=["runs"])

RUN_ENDED = {"completed", "failed", "cancelled"}


def _no_nul(value: Any, path: str) -> None:
    """A NUL character cannot be stored in PostgreSQL text: refuse it here, naming where it is."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{path or 'value'} contains a NUL character")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k, path)
            _no_nul(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_nul(v, f"{path}[{i}]")


class StartRun(BaseModel):
    plan: dict[str, Any] | None = Field(default=None, description="the plan object (docs/plan-format.md)")
    plan_id: str = Field(default="", max_length=200, pattern=NO_CONTROL_OR_EMPTY,
                         description="or: the id of an approved plan Session 0 produced")
    repo_path: str = Field(default="", max_length=4096, pattern=NO_CONTROL_OR_EMPTY,
                           description="a git repository on the gateway's machine")
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict, description="overrides per config section")
    target_branch: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_CONTROL)

    @field_validator("plan", "settings")
    @classmethod
    def _storable(cls, value: Any, info: Any) -> Any:
        _no_nul(value, info.field_name)
        return value


class CancelRun(BaseModel):
    reason: str = Field(default="cancelled by a person", max_length=2000)


async def run_or_404(database: DatabaseDep, run_id: RunId) -> dict[str, Any]:
    run = await readmodel.get_run(database, run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id!r}: GET /api/runs lists the known runs", "run_id")
    return run


def check_settings(config: ConfigDep, settings: dict[str, dict[str, Any]]) -> None:
    base = config.run_settings().to_dict()
    for section in settings:
        if section not in base:
            raise ApiError(422, f"settings has no section {section!r}: use one of {', '.join(sorted(base))}",
                           f"settings.{section}")
    merged = msgspec.to_builtins(config)
    for section, values in settings.items():
        merged[section] = {**merged[section], **values}
    try:
        parse_config(merged, source="settings")
    except ConfigError as exc:
        raise ApiError(422, str(exc), "settings") from None


@router.get("/api/runs")
async def list_runs(database: DatabaseDep,
                    project: str | None = Query(default=None, min_length=1, max_length=64, pattern=NO_CONTROL),
                    limit: int = Query(default=200, ge=1, le=1000)) -> dict[str, Any]:
    return {"runs": await readmodel.list_runs(database, project, limit)}


@router.get("/api/runs/{run_id}")
async def get_run(run_id: RunId, database: DatabaseDep) -> dict[str, Any]:
    detail = await readmodel.run_detail(database, run_id)
    if detail is None:
        raise ApiError(404, f"no run {run_id!r}: GET /api/runs lists the known runs", "run_id")
    return detail


@router.get("/api/runs/{run_id}/waiting")
async def get_run_waiting(run_id: RunId, database: DatabaseDep, bus: BusDep) -> dict[str, Any]:
    """Tasks of a running run handed to the executors that none has taken up, how long each has
    waited, and whether any executor asks for work (`executors_pulling`: fetches waiting on the
    executor consumer, null when no executor ever bound it), with the line `yokeflow status` prints."""
    await run_or_404(database, run_id)
    unstarted = await readmodel.waiting(database, run_id)
    executors = await bus.pullers("executor") if unstarted else None
    return {"run_id": run_id, "unstarted": unstarted, "executors_pulling": executors,
            "line": readmodel.waiting_line(unstarted, executors)}


@router.get("/api/runs/{run_id}/events")
async def get_run_events(run_id: RunId, database: DatabaseDep, after: int = Query(default=0, ge=0, le=SEQ_MAX),
                         limit: int = Query(default=500, ge=1, le=5000),
                         tail: int | None = Query(default=None, ge=1, le=5000)) -> dict[str, Any]:
    await run_or_404(database, run_id)
    events = await readmodel.run_events(database, run_id, after, limit, tail)
    return {"run_id": run_id, "events": events, "last_seq": events[-1]["seq"] if events else after,
            "more": tail is None and len(events) == limit}


async def start_command(body: StartRun, bus: BusDep, config: ConfigDep) -> Any:
    """Check the request, then start the run through shared.commands (the CLI's code path)."""
    if body.plan is not None and body.plan_id:
        raise ApiError(422, "send either plan (a plan object) or plan_id (an approved Session 0 plan), not both",
                       "plan_id")
    plan = body.plan
    if body.plan_id:
        produced = await plans.plan_or_404(bus, body.plan_id)
        if produced["status"] != "approved":
            raise ApiError(409, f"plan {body.plan_id} is {produced['status']}, not approved: review it "
                                f"(GET /api/plans/{body.plan_id}), then POST /api/plans/{body.plan_id}/approve",
                           "plan_id")
        plan = produced["plan"]
    if plan is None:
        raise ApiError(422, "plan is required: send the plan object with `name` and `epics` (docs/plan-format.md), "
                            "or the plan_id of an approved Session 0 plan", "plan")
    if not body.repo_path.strip():
        raise ApiError(422, "repo_path is required: the path of a git repository on the gateway's machine",
                       "repo_path")
    check_settings(config, body.settings)
    try:
        return await commands.start_run(bus, plan, body.repo_path, config, target_branch=body.target_branch,
                                        settings_override=body.settings)
    except commands.CommandError as exc:
        raise ApiError(422, str(exc), exc.field or None, problems=exc.problems) from None


@router.post("/api/runs", status_code=201)
async def start_run(body: StartRun, bus: BusDep, database: DatabaseDep, config: ConfigDep,
                    wait_timeout: WaitTimeoutDep, wait: bool = False) -> JSONResponse:
    started = await start_command(body, bus, config)
    landed = await writes.settle(bus, database, started, wait=wait, timeout=wait_timeout)
    return JSONResponse({"run_id": started.run_id, "project_id": started.project_id, **landed}, status_code=201,
                        headers={"Location": f"/api/runs/{started.run_id}"})


@router.post("/api/runs/{run_id}/cancel", status_code=202)
async def cancel_run(run_id: RunId, bus: BusDep, database: DatabaseDep, wait_timeout: WaitTimeoutDep,
                     body: CancelRun | None = None, wait: bool = False) -> dict[str, Any]:
    run = await run_or_404(database, run_id)
    if run["status"] in RUN_ENDED:
        raise ApiError(409, f"run {run_id} is already {run['status']}: only a running run can be cancelled", "run_id")
    cancelled = await commands.cancel_run(bus, run["project_id"], run_id, (body or CancelRun()).reason)
    landed = await writes.settle(bus, database, cancelled, wait=wait, timeout=wait_timeout)
    return {"run_id": run_id, "status": "cancelling", **landed}

