"""A task of a run: its attempts, merges and costs; retrying a merge that conflicted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from shared import commands
from services.gateway import readmodel, writes
from services.gateway.deps import ApiError, BusDep, DatabaseDep, WaitTimeoutDep
from services.gateway.routes.runs import run_or_404

router = APIRouter(tags=["tasks"])


async def _task_or_404(database: DatabaseDep, run_id: str, task_id: str) -> dict[str, Any]:
    await run_or_404(database, run_id)
    detail = await readmodel.task_detail(database, run_id, task_id)
    if detail is None:
        raise ApiError(404, f"run {run_id} has no task {task_id!r}: GET /api/runs/{run_id} lists its tasks", "task_id")
    return detail


@router.get("/api/runs/{run_id}/tasks/{task_id}")
async def get_task(run_id: str, task_id: str, database: DatabaseDep) -> dict[str, Any]:
    return await _task_or_404(database, run_id, task_id)


@router.post("/api/runs/{run_id}/tasks/{task_id}/merge", status_code=202)
async def retry_merge(run_id: str, task_id: str, bus: BusDep, database: DatabaseDep, wait_timeout: WaitTimeoutDep,
                      wait: bool = False) -> dict[str, Any]:
    task = (await _task_or_404(database, run_id, task_id))["task"]
    if task["status"] != "done" or task["merge_status"] == "merged":
        state = "already merged" if task["merge_status"] == "merged" else f"{task['status']}, not done"
        raise ApiError(409, f"task {task_id} is {state}: only a finished task whose merge conflicted (or never ran) "
                            "can be merged again", "task_id")
    requested = await commands.request_merge(bus, task["project_id"], run_id, task_id, requested_by="api")
    landed = await writes.settle(bus, database, requested, wait=wait, timeout=wait_timeout)
    return {"run_id": run_id, "task_id": task_id, "status": "merge_requested", **landed}
