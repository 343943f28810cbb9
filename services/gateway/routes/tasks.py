"""A task of a run: its attempts, merges, costs, agent log and diff; the run's conflicts and the merge retry."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query

from shared import commands
from shared import readmodel
from shared.gitops.errors import GitError
from services.gateway import gitview, writes
from services.gateway.deps import SEQ_MAX, ApiError, BusDep, DatabaseDep, RunId, TaskId, WaitTimeoutDep
from services.gateway.logs import read_task_log
from services.gateway.routes.runs import run_or_404

router = APIRouter(tags=["tasks"])


async def _task_or_404(database: DatabaseDep, run_id: str, task_id: str) -> dict[str, Any]:
    await run_or_404(database, run_id)
    detail = await readmodel.task_detail(database, run_id, task_id)
    if detail is None:
        raise ApiError(404, f"run {run_id} has no task {task_id!r}: GET /api/runs/{run_id} lists its tasks", "task_id")
    return detail


@router.get("/api/runs/{run_id}/tasks/{task_id}")
async def get_task(run_id: RunId, task_id: TaskId, database: DatabaseDep) -> dict[str, Any]:
    return await _task_or_404(database, run_id, task_id)


@router.post("/api/runs/{run_id}/tasks/{task_id}/merge", status_code=202)
async def retry_merge(run_id: RunId, task_id: TaskId, bus: BusDep, database: DatabaseDep, wait_timeout: WaitTimeoutDep,
                      wait: bool = False) -> dict[str, Any]:
    task = (await _task_or_404(database, run_id, task_id))["task"]
    if task["status"] != "done" or task["merge_status"] == "merged":
        state = "already merged" if task["merge_status"] == "merged" else f"{task['status']}, not done"
        raise ApiError(409, f"task {task_id} is {state}: only a finished task whose merge conflicted (or never ran) "
                            "can be merged again", "task_id")
    requested = await commands.request_merge(bus, task["project_id"], run_id, task_id, requested_by="api")
    landed = await writes.settle(bus, database, requested, wait=wait, timeout=wait_timeout)
    return {"run_id": run_id, "task_id": task_id, "status": "merge_requested", **landed}


@router.get("/api/runs/{run_id}/tasks/{task_id}/log")
async def task_log(run_id: RunId, task_id: TaskId, database: DatabaseDep, bus: BusDep,
                   after: int = Query(default=0, ge=0, le=SEQ_MAX, description="the last log seq already read"),
                   limit: int = Query(default=200, ge=1, le=1000)) -> dict[str, Any]:
    """The task's agent log (tool calls, text, command output) from YF_LOGS, in order, a page at a time."""
    task = (await _task_or_404(database, run_id, task_id))["task"]
    entries, more = await read_task_log(bus, task["project_id"], run_id, task_id, after=after, limit=limit)
    return {"run_id": run_id, "task_id": task_id, "entries": entries,
            "last_seq": entries[-1]["seq"] if entries else after, "more": more}


@router.get("/api/runs/{run_id}/tasks/{task_id}/diff")
async def task_diff(run_id: RunId, task_id: TaskId, database: DatabaseDep) -> dict[str, Any]:
    """What the task's branch brings to the target branch (see docs/api.md for merged tasks)."""
    task = (await _task_or_404(database, run_id, task_id))["task"]
    run = await run_or_404(database, run_id)
    try:
        diff = await asyncio.to_thread(gitview.task_diff, run["repo_path"], run["target_branch"] or "main",
                                       branch=task["branch"] or "", commit=task["commit"] or "",
                                       merge_commit=task["merge_commit"] or "")
    except GitError as exc:
        raise ApiError(409, f"no diff for task {task_id}: {exc}", "task_id") from None
    return {"run_id": run_id, "task_id": task_id, "branch": task["branch"], "target_branch": run["target_branch"],
            "merged": bool(task["merge_commit"]), "base": diff.base, "head": diff.head, "files": diff.files,
            "diff": diff.text, "truncated": diff.truncated}


@router.get("/api/runs/{run_id}/conflicts")
async def conflicts(run_id: RunId, database: DatabaseDep) -> dict[str, Any]:
    """Tasks whose merge conflicted and still wait, with the files and what a person can do."""
    detail = await readmodel.run_detail(database, run_id)
    if detail is None:
        raise ApiError(404, f"no run {run_id!r}: GET /api/runs lists the known runs", "run_id")
    out = []
    for t in detail["tasks"]:
        if t["state"] != "conflict":
            continue
        info = await readmodel.task_detail(database, run_id, t["id"])
        merge = next((m for m in reversed(info["merges"]) if m["status"] == "conflict"), {}) if info else {}
        worktree = next((w["path"] for w in (info or {}).get("worktrees", [])), "")
        out.append({"task_id": t["id"], "title": t["title"], "epic_id": t["epic_id"], "branch": t["branch"],
                    "worktree": worktree, "files": [c.get("path", "") for c in merge.get("conflicts") or []],
                    "reason": t["reason"], "occurred_at": merge.get("occurred_at"),
                    "actions": {
                        "retry": f"/api/runs/{run_id}/tasks/{t['id']}/merge",
                        "resolve": f"merge {detail['run']['target_branch'] or 'main'} into {t['branch'] or 'the branch'} "
                                   f"in {worktree or 'the task worktree'}, fix the files, commit, then retry"}})
    return {"run_id": run_id, "conflicts": out}
