"""The merger's wiring: every successful `AgentFinished` (and every `MergeRequested`) is
merged into the run's target branch as soon as it arrives; batches are announced when
all their tasks are merged; worktrees are cleaned up.

Idempotent: the event id of a merge is derived from the branch head it merged, and the
git layer reports a branch already contained in the target as up to date with the merge
commit that brought it in, so a redelivery or a restart after a crash merges once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from shared import events as ev
from shared import telemetry
from shared.bus import Bus, Delivery
from shared.config import Config
from shared.git import GitError, WorktreeManager, head_of, merge_branch
from shared.lanes import Lane, lane_of
from shared.plan import PlanError, parse_plan

log = logging.getLogger("yokeflow.merger")


@dataclass
class RunInfo:
    started: ev.RunStarted
    batches: list[list[str]] = field(default_factory=list)
    merged: set[str] = field(default_factory=set)
    announced: set[int] = field(default_factory=set)
    finished: dict[str, ev.AgentFinished] = field(default_factory=dict)
    _lanes: dict[str, Lane] | None = None

    def setting(self, section: str, key: str, default: Any) -> Any:
        return (self.started.settings.get(section) or {}).get(key, default)

    def lanes(self) -> dict[str, Lane]:
        """Task id -> smart lane, computed from the plan as the scheduler computes it."""
        if self._lanes is None:
            try:
                self._lanes = lane_of(parse_plan(self.started.plan))
            except PlanError:  # the scheduler fails such a run before any task runs
                self._lanes = {}
        return self._lanes


class Merger:
    def __init__(self, bus: Bus, *, ack_wait: float = 120.0):
        self.bus = bus
        self.runs: dict[str, RunInfo] = {}
        self.ack_wait = ack_wait  # a crashed merger's merge is redelivered after this long

    def fold(self, e: ev.Event) -> RunInfo | None:
        if isinstance(e, ev.RunStarted):
            self.runs.setdefault(e.run_id, RunInfo(e))
        info = self.runs.get(getattr(e, "run_id", "") or "")
        if info is None:
            return None
        match e:
            case ev.BatchesComputed():
                info.batches = e.batches
            case ev.BranchMerged():
                info.merged.add(e.task_id)
            case ev.BatchMerged():
                info.announced.add(e.batch)
            case ev.AgentFinished() if e.outcome == "success":
                info.finished[e.task_id] = e
        return info

    async def catch_up(self) -> None:
        async for d in self.bus.read():
            self.fold(d.event)

    async def handle(self, d: Delivery) -> None:
        e = d.event
        info = self.fold(e)
        if info is None:
            return
        if isinstance(e, ev.AgentFinished) and e.outcome == "success":
            await self.merge(info, e.task_id, e.branch, e)
        elif isinstance(e, ev.MergeRequested):
            finished = info.finished.get(e.task_id)
            branch = e.branch or (finished.branch if finished else "")
            if not branch:
                log.warning("merge of task %s requested but no branch is known", e.task_id)
                return
            await self.merge(info, e.task_id, branch, e)
        elif isinstance(e, (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)):
            await self._cleanup_run(info)

    async def merge(self, info: RunInfo, task_id: str, branch: str, cause: ev.Event) -> None:
        run = info.started
        target = run.target_branch
        head = await asyncio.to_thread(head_of, run.repo_path, branch)
        if head is None:
            await self._conflicted(info, task_id, branch, cause, [], f"branch {branch} does not exist")
            return
        title = _task_title(run.plan, task_id)
        try:
            with telemetry.span(f"merge {branch}", {"yf.run_id": run.run_id, "yf.task_id": task_id,
                                                    "yf.merge.target": target}) as span:
                result = await asyncio.to_thread(
                    merge_branch, run.repo_path, branch, into=target, mode=str(info.setting("merge", "mode", "merge")),
                    message=f"Merge task {task_id}: {title}\n\nYokeFlow-Task: {task_id}\nYokeFlow-Run: {run.run_id}\n",
                    validate_command=info.setting("merge", "validate_command", "") or None)
                telemetry.set_attributes(span, {"yf.merge.status": result.status, "yf.merge.commit": result.commit})
        except GitError as exc:
            await self._conflicted(info, task_id, branch, cause, [], str(exc))
            return
        for warning in result.warnings:
            log.warning("%s", warning)
        if result.status in ("merged", "up_to_date"):
            merged = cause.caused(ev.BranchMerged, aggregate_id=ev.task_aggregate_id(run.run_id, task_id),
                                  run_id=run.run_id, task_id=task_id, branch=branch, target_branch=target,
                                  commit=result.commit or "", tree=result.tree or "", status=result.status)
            await self.bus.publish(merged, msg_id=f"{run.run_id}:{task_id}:{head}:BranchMerged")
            info.merged.add(task_id)
            await self._release(info, task_id, branch)
            await self._announce_batches(info, cause)
        else:
            reason = "merge conflict" if result.status == "conflict" else f"merge {result.status}"
            await self._conflicted(info, task_id, branch, cause, result.conflicts, reason, head)

    async def _conflicted(self, info: RunInfo, task_id: str, branch: str, cause: ev.Event,
                          conflicts: list[dict], reason: str, head: str | None = None) -> None:
        run = info.started
        e = cause.caused(ev.MergeConflicted, aggregate_id=ev.task_aggregate_id(run.run_id, task_id),
                         run_id=run.run_id, task_id=task_id, branch=branch, target_branch=run.target_branch,
                         conflicts=conflicts, reason=reason[:4000])
        await self.bus.publish(e, msg_id=f"{run.run_id}:{task_id}:{head or 'nohead'}:{cause.event_id}:MergeConflicted")

    async def _release(self, info: RunInfo, task_id: str, branch: str) -> None:
        strategy = info.setting("parallel", "strategy", "by_epic")
        if strategy == "by_epic":
            return  # the epic's worktree serves its next task; removed when the run ends
        lane = info.lanes().get(task_id) if strategy == "smart" else None
        if lane is not None and not all(t in info.merged for t in lane.task_ids):
            return  # the lane's next task reuses the worktree; released with the lane's last merge or the run
        manager = WorktreeManager(info.started.repo_path, target_branch=info.started.target_branch)
        name = info.finished[task_id].worktree if task_id in info.finished else ""
        if name:
            await asyncio.to_thread(_release_quietly, manager, _worktree_name(name),
                                    not info.setting("merge", "keep_branches", False))

    async def _cleanup_run(self, info: RunInfo) -> None:
        manager = WorktreeManager(info.started.repo_path, target_branch=info.started.target_branch)
        keep = bool(info.setting("merge", "keep_branches", False))
        for task_id in info.merged:
            finished = info.finished.get(task_id)
            if finished and finished.worktree:
                await asyncio.to_thread(_release_quietly, manager, _worktree_name(finished.worktree), not keep)

    async def _announce_batches(self, info: RunInfo, cause: ev.Event) -> None:
        run = info.started
        for index, ids in enumerate(info.batches):
            if index in info.announced or not ids or not all(t in info.merged for t in ids):
                continue
            e = cause.caused(ev.BatchMerged, aggregate_id=f"{run.run_id}-{index}", run_id=run.run_id,
                             batch=index, task_ids=list(ids))
            await self.bus.publish(e, msg_id=f"{run.run_id}:batch:{index}:BatchMerged")
            info.announced.add(index)

    async def serve(self, stop: asyncio.Event) -> None:
        await self.catch_up()
        subjects = [self.bus.type_filter(t) for t in
                    ("RunStarted", "BatchesComputed", "AgentFinished", "MergeRequested", "BranchMerged",
                     "BatchMerged", "RunCompleted", "RunFailed", "RunCancelled")]
        await self.bus.consume("merger", subjects, self.handle, stop=stop, ack_wait=self.ack_wait, max_deliver=5)


def _task_title(plan: dict, task_id: str) -> str:
    for epic in plan.get("epics", []):
        for task in epic.get("tasks", []):
            if str(task.get("id")) == task_id:
                return str(task.get("title", ""))
    return ""


def _worktree_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _release_quietly(manager: WorktreeManager, name: str, delete_branch: bool) -> None:
    try:
        manager.release(name, delete_branch=delete_branch)
    except GitError as exc:  # already gone: cleanup is best effort, the merge is what counts
        log.info("cleanup of worktree %s: %s", name, exc)


async def serve(bus: Bus, config: Config, stop: asyncio.Event) -> None:
    await Merger(bus, ack_wait=float(os.environ.get("YOKEFLOW_MERGER_ACK_WAIT", "120"))).serve(stop)
