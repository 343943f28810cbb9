"""A task of a run: its attempts, merges, costs, agent log and diff; the run's conflicts and the merge retry."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from shared import commands
from shared import readmodel
from shared.gitops import head_of
from shared.gitops.errors import GitError
from shared.gitops.resolved import ResolutionRefused, check_files
from services.gateway import gitview, writes
from services.gateway.deps import NO_CONTROL, SEQ_MAX, ApiError, BusDep, DatabaseDep, RunId, TaskId, WaitTimeoutDep
from services.gateway.logs import read_task_log
from services.gateway.routes.runs import run_or_404

router = APIRouter(tags=["tasks"])

MAX_RESOLVED_BYTES = 512 * 1024  # a resolution travels in one event (NATS messages are 1 MiB by default)


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


class Resolve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["retry", "accept", "resolve", "rerun"] = Field(description=(
        "retry: merge the branch again (the target moved); accept: merge the resolution `commit` a person "
        "pushed to the task's branch; resolve: commit `files` (each conflicting file's resolved content) on the "
        "branch as the merge of the target, then merge; rerun: set the branch aside and run the task again on "
        "the target as it is"))
    commit: str = Field(default="", max_length=40, pattern=r"^([0-9a-f]{40})?$",
                        description="accept: the branch's head being accepted; resolve: the branch head the files "
                                    "were resolved against (GET …/conflict: branch_head)")
    files: dict[Annotated[str, Field(min_length=1, max_length=1000, pattern=NO_CONTROL)],
                Annotated[str, Field(max_length=MAX_RESOLVED_BYTES, pattern=r"^[^\x00]*$")]] = Field(
        default_factory=dict, max_length=200, description="resolve: path -> resolved content, no conflict markers")
    requested_by: str = Field(default="api", min_length=1, max_length=200, pattern=NO_CONTROL)


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
        base = f"/api/runs/{run_id}/tasks/{t['id']}"
        out.append({"task_id": t["id"], "title": t["title"], "epic_id": t["epic_id"], "branch": t["branch"],
                    "worktree": worktree, "files": [c.get("path", "") for c in merge.get("conflicts") or []],
                    "reason": t["reason"], "occurred_at": merge.get("occurred_at"),
                    "actions": {
                        "view": f"{base}/conflict",
                        "retry": f"{base}/merge",
                        "resolve": f"{base}/resolve",
                        "how": f"retry after {detail['run']['target_branch'] or 'main'} moved; or merge it into "
                               f"{t['branch'] or 'the branch'} in {worktree or 'the task worktree'}, fix the files, "
                               "commit and accept that commit; or rerun the task on the target as it is"}})
    return {"run_id": run_id, "conflicts": out}


async def _conflicted_or_409(database: DatabaseDep, run_id: str, task_id: str) -> dict[str, Any]:
    info = await _task_or_404(database, run_id, task_id)
    if info["task"]["state"] != "conflict":
        raise ApiError(409, f"task {task_id} is {info['task']['state']}, not in conflict: GET /api/runs/{run_id}/conflicts "
                            "lists the tasks that are", "task_id")
    return info


@router.get("/api/runs/{run_id}/tasks/{task_id}/conflict")
async def conflict_detail(run_id: RunId, task_id: TaskId, database: DatabaseDep) -> dict[str, Any]:
    """A conflicted task's files now: base, ours (the target's), theirs (the branch's) and the
    conflict-marked text, whether the branch would merge cleanly now, and whether someone committed
    on the branch since the attempt (a resolution to accept)."""
    info = await _conflicted_or_409(database, run_id, task_id)
    task = info["task"]
    run = await run_or_404(database, run_id)
    merge = next((m for m in reversed(info["merges"]) if m["status"] == "conflict"), {})
    recorded = [c.get("path", "") for c in merge.get("conflicts") or []]
    try:
        view = await asyncio.to_thread(gitview.conflict_view, run["repo_path"], run["target_branch"] or "main",
                                       branch=task["branch"] or "", attempt_commit=task["commit"] or "",
                                       recorded_paths=recorded)
    except GitError as exc:
        raise ApiError(409, f"no conflict view for task {task_id}: {exc}", "task_id") from None
    return {"run_id": run_id, "task_id": task_id, "branch": task["branch"], "target_branch": run["target_branch"],
            "attempt": task["attempt"], "reason": task["reason"], "recorded_files": recorded, **view}


async def _check_resolution(database: DatabaseDep, run_id: str, task: dict[str, Any], body: "Resolve") -> None:
    """Refuse a resolution that cannot be committed, naming the file (the merger checks it again)."""
    if not body.commit:
        raise ApiError(422, "commit is required to resolve: the branch head the files were resolved against "
                            f"(GET /api/runs/{run_id}/tasks/{task['id']}/conflict: branch_head)", "commit")
    if sum(len(v.encode()) for v in body.files.values()) > MAX_RESOLVED_BYTES:
        raise ApiError(422, f"files: more than {MAX_RESOLVED_BYTES // 1024} KiB in all; resolve large files in the "
                            "task's worktree and accept the commit instead", "files")
    run = await run_or_404(database, run_id)
    try:
        view = await asyncio.to_thread(gitview.conflict_view, run["repo_path"], run["target_branch"] or "main",
                                       branch=task["branch"] or "", attempt_commit=task["commit"] or "",
                                       recorded_paths=[])
    except GitError as exc:
        raise ApiError(409, f"cannot resolve task {task['id']} here: {exc}", "task_id") from None
    if view["branch_head"] != body.commit:
        raise ApiError(409, f"{task['branch']} moved to {view['branch_head'][:12]} since {body.commit[:12]} was "
                            "shown: reload the conflict and resolve again", "commit")
    binary = [f["path"] for f in view["files"] if f["binary"]]
    if binary:
        raise ApiError(422, f"files: {', '.join(binary)} are binary: resolve them in the task's worktree and accept "
                            "the commit", "files")
    try:
        check_files({f["path"] for f in view["files"]}, body.files)
    except ResolutionRefused as exc:
        raise ApiError(422, str(exc), exc.field) from None


@router.post("/api/runs/{run_id}/tasks/{task_id}/resolve", status_code=202)
async def resolve(run_id: RunId, task_id: TaskId, body: Resolve, bus: BusDep, database: DatabaseDep,
                  wait_timeout: WaitTimeoutDep, wait: bool = False) -> dict[str, Any]:
    """Act on a conflicted task through the merger: `retry` the merge, `accept` the resolution commit
    a person pushed to the branch (merged only while it is the branch's head), or `rerun` the task
    as a new attempt on the target as it is now (its old work kept at a ref of its own)."""
    info = await _conflicted_or_409(database, run_id, task_id)
    task = info["task"]
    if body.action == "accept":
        if not body.commit:
            raise ApiError(422, "commit is required to accept a resolution: the 40-hex head of the task's branch "
                                f"(GET /api/runs/{run_id}/tasks/{task_id}/conflict: branch_head)", "commit")
        run = await run_or_404(database, run_id)
        head = await asyncio.to_thread(head_of, run["repo_path"], task["branch"] or "")
        if head != body.commit:
            raise ApiError(409, f"{task['branch']} is at {str(head)[:12]}, not {body.commit[:12]}: accept its head, "
                                "or push the resolution first", "commit")
    if body.action == "resolve":
        await _check_resolution(database, run_id, task, body)
    requested = await commands.request_merge(bus, task["project_id"], run_id, task_id, requested_by=body.requested_by,
                                             action=body.action, commit=body.commit, attempt=int(task["attempt"] or 0),
                                             files=body.files)
    landed = await writes.settle(bus, database, requested, wait=wait, timeout=wait_timeout)
    return {"run_id": run_id, "task_id": task_id, "action": body.action,
            "status": "rerun_requested" if body.action == "rerun" else "merge_requested",
            **landed}
