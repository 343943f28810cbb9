"""The merger's wiring: every successful attempt's committed work (its `WorkCommitted`, or an
`AgentFinished` of a version that committed before it) and every `MergeRequested` is merged into
the run's target branch as soon as it arrives; batches are announced when
all their tasks are merged; worktrees are cleaned up.

Exactly once by identity: a merge is keyed by (run, task, attempt). The log's record of an
attempt's merge is its answer to a redelivery; a merge whose ref update happened but whose
event did not (a crash in between) is found again on the target by its commit's trailers.
The decisions live in services/merger/domain.py; this module does the git and bus calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time

import msgspec

from shared import events as ev
from shared import gitserve, metrics, telemetry
from shared.threads import Priority, Threads
from shared.gitworker import git_worker
from shared.bus import Bus, Delivery
from shared.config import Config
from shared.gitops import GitError, WorktreeManager, find_commit, set_aside
from shared.gitops.merge import MergeResult
from shared.gitops.resolved import commit_resolution
from shared.runner import unless_stopped
from services.merger import domain, gitjobs
from services.merger.domain import RunView

log = logging.getLogger("yokeflow.merger")

class Merger:
    def __init__(self, bus: Bus, *, ack_wait: float = 120.0, crash_after_ref_update: bool = False):
        self.bus = bus
        self.crash_after_ref_update = crash_after_ref_update  # tests only: runtime.merger_crash_after_ref_update
        self.state = domain.MergerState()
        self.ack_wait = ack_wait  # a crashed merger's merge is redelivered after this long
        # Its own thread for git work: merges are serial, and in a process shared with executors the
        # default pool's few threads are often all busy with worktrees, so each merge waited its turn
        # there and every dependent waited for the merge.
        self._git = Threads("yokeflow-merger-git", max_workers=1)

    @property
    def runs(self) -> dict[str, RunView]:
        return self.state.runs

    def fold(self, e: ev.Event) -> RunView | None:
        return self.state.apply(e)

    async def catch_up(self) -> None:
        async for d in self.bus.read(patient=True):  # a NATS outage at start is waited out
            self.fold(d.event)

    async def handle(self, d: Delivery) -> None:
        e = d.event
        view = self.fold(e)
        if view is None:
            return
        match domain.decide(view, e):
            case domain.Merge() as action:
                await self.merge(view, action, e)
            case domain.Reset() as action:
                await self.set_aside(view, action, e)
            case domain.Cleanup():
                await self._cleanup_run(view)
            case domain.Ignore(why=why) if why:
                log.info("%s %s: %s", e.type, getattr(e, "task_id", ""), why)

    async def merge(self, view: RunView, action: domain.Merge, cause: ev.Event) -> None:
        run = view.started
        if action.recorded is not None:  # merged before (this is a redelivery): the record stands
            await self._after_merge(view, action.task_id, action.branch, cause)
            return
        if not await self.bus.run_open(run.project_id, run.run_id):  # this fold may lag the log
            log.info("task %s: run %s ended or was cancelled: not merged", action.task_id, run.run_id)
            return
        target = run.target_branch
        trailers = domain.merge_trailers(run.run_id, action.task_id, action.attempt)
        title = view.task_title(action.task_id)
        message = f"Merge task {action.task_id}: {title}\n\n" + "".join(f"{k}: {v}\n" for k, v in trailers.items())
        settings = run.settings

        merging = dict(into=target, mode=settings.merge.mode, message=message,
                       validate_command=settings.merge.validate_command or None, sandbox=settings.agent.sandbox)
        # In the git worker, unless a validate command runs (it can take minutes: on the merger's thread).
        job = self._git.run_in_turn if settings.merge.validate_command else self._git.run_in_worker

        async def merge() -> tuple[str | None, MergeResult | None, str | None]:
            """The branch's head and its merge into the target, in one job: (head, result, refusal)."""
            began = time.monotonic()
            with telemetry.span(f"merge {action.branch}", {"yf.run_id": run.run_id, "yf.task_id": action.task_id,
                                                           "yf.merge.target": target}) as span:
                head, result, refusal = await job(Priority.FLOW, gitjobs.head_then_merge, run.repo_path,
                                                  action.branch, merging)
                if result is not None:
                    telemetry.set_attributes(span, {"yf.merge.status": result.status,
                                                    "yf.merge.commit": result.commit})
            if result is not None:
                metrics.MERGE_DURATION.record(time.monotonic() - began, {"status": result.status})
                if self.crash_after_ref_update and result.status == "merged":  # before anything else happens
                    log.critical("crash point: %s moved to %s for task %s; dying before the event and the ack",
                                 target, result.commit, action.task_id)
                    os._exit(17)
            return head, result, refusal

        # The usual merge (the branch as the agent left it) is one job with the read of its head: when
        # several agents end at once, each waited for the others' merges twice.
        plain = not action.files and not action.commit
        head, result, failed = await (merge() if plain else job(Priority.FLOW, gitjobs.head_then_merge,
                                                                run.repo_path, action.branch, None))
        if failed is not None:
            await self._conflicted(view, action, cause, [], failed, head)
            return
        if head is None:  # released after a merge whose event was lost, or never there
            found = await self._git.run_in_turn(Priority.FLOW, find_commit, run.repo_path, target, trailers)
            if found:
                await self._merged(view, action, cause, commit=found[0], tree=found[1], status="merged")
            else:
                await self._conflicted(view, action, cause, [], f"branch {action.branch} does not exist")
            return
        if result is None:  # a resolution to commit first, or a head the person accepted
            result = await self._merge_chosen(view, action, cause, head, merge)
            if result is None:
                return
        for warning in result.warnings:
            log.warning("%s", warning)
        if result.status == "merged":
            await self._merged(view, action, cause, commit=result.commit or "", tree=result.tree or "",
                               status="merged", warnings=list(result.warnings))
        elif result.status == "up_to_date":
            # its own merge commit if this attempt was merged before a crash; else nothing of its own
            found = await self._git.run_in_turn(Priority.FLOW, find_commit, run.repo_path, target, trailers)
            await self._merged(view, action, cause, commit=found[0] if found else "",
                               tree=found[1] if found else (result.tree or ""),
                               status="merged" if found else "up_to_date")
        else:
            reason = "merge conflict" if result.status == "conflict" else f"merge {result.status}"
            await self._conflicted(view, action, cause, result.conflicts, reason, head)

    async def _merge_chosen(self, view: RunView, action: domain.Merge, cause: ev.Event, head: str,
                            merge) -> MergeResult | None:
        """The merge of what a person chose: their resolution from the web UI committed on the branch
        first, or the head they accepted (and nothing since). None when it was refused (recorded)."""
        run = view.started
        if action.files:
            try:
                head = await self._git.run_in_turn(Priority.FLOW, commit_resolution, run.repo_path, action.branch,
                                                   target=run.target_branch, files=action.files,
                                                   expected_head=action.commit)
            except GitError as exc:
                await self._conflicted(view, action, cause, [], f"resolution not committed: {exc}", head)
                return None
            action = dataclasses.replace(action, commit=head, files=None)
        if action.commit and head != action.commit:
            await self._conflicted(view, action, cause, [], f"the resolution accepted is {action.commit[:12]} but "
                                   f"{action.branch} is at {head[:12]}: accept its head, or retry the merge", head)
            return None
        _, result, refusal = await merge()
        if result is None:
            await self._conflicted(view, action, cause, [], refusal or f"branch {action.branch} does not exist", head)
        return result

    async def set_aside(self, view: RunView, action: domain.Reset, cause: ev.Event) -> None:
        """Point the task's branch at the target for a new attempt; the old work stays at its own ref."""
        if action.recorded is not None:  # set aside before (a redelivery): the record stands
            return
        run = view.started
        keep = domain.set_aside_ref(run.run_id, action.task_id, action.attempt)
        try:
            old, new = await self._git.run_in_turn(Priority.FLOW, set_aside, run.repo_path, action.branch,
                                                   onto=run.target_branch, keep_ref=keep)
        except GitError as exc:
            await self._conflicted(view, domain.Merge(action.task_id, action.branch, action.attempt), cause, [],
                                   f"rerun refused: {exc}")
            return
        reset = cause.caused(ev.BranchReset, aggregate_id=ev.task_aggregate_id(run.run_id, action.task_id),
                             run_id=run.run_id, task_id=action.task_id, branch=action.branch,
                             target_branch=run.target_branch, attempt=action.attempt, old_head=old, new_head=new,
                             kept_ref=keep, requested_by=action.requested_by)
        self.fold(reset)
        await self.bus.publish(reset, msg_id=f"{run.run_id}:{action.task_id}:{action.attempt}:BranchReset")

    async def _merged(self, view: RunView, action: domain.Merge, cause: ev.Event, *, commit: str, tree: str,
                      status: str, warnings: list[str] = ()) -> None:
        run = view.started
        merged = cause.caused(ev.BranchMerged, aggregate_id=ev.task_aggregate_id(run.run_id, action.task_id),
                              run_id=run.run_id, task_id=action.task_id, branch=action.branch,
                              target_branch=run.target_branch, commit=commit, tree=tree, status=status,
                              attempt=action.attempt, warnings=list(warnings))
        self.fold(merged)
        # batches first: once the last BranchMerged is out, the run may end, and nothing follows its end
        await self._announce_batches(view, cause)
        # a merge already on the target is recorded even if the run was cancelled meanwhile
        await self.bus.publish_in_run(merged, run.run_id, after_cancel=True,
                                      msg_id=domain.merge_msg_id(run.run_id, action.task_id, action.attempt))
        await self._release(view, action.task_id)

    async def _after_merge(self, view: RunView, task_id: str, branch: str, cause: ev.Event) -> None:
        await self._announce_batches(view, cause)
        await self._release(view, task_id)

    async def _conflicted(self, view: RunView, action: domain.Merge, cause: ev.Event, conflicts: list[dict],
                          reason: str, head: str | None = None) -> None:
        run = view.started
        e = cause.caused(ev.MergeConflicted, aggregate_id=ev.task_aggregate_id(run.run_id, action.task_id),
                         run_id=run.run_id, task_id=action.task_id, branch=action.branch,
                         target_branch=run.target_branch,
                         conflicts=msgspec.convert(conflicts, list[ev.Conflict]), reason=reason[:4000],
                         attempt=action.attempt)
        await self.bus.publish_in_run(e, run.run_id, msg_id=f"{run.run_id}:{action.task_id}:{action.attempt}:"
                                                           f"{cause.event_id}:MergeConflicted")

    async def _release(self, view: RunView, task_id: str) -> None:
        if not domain.releases_worktree(view, task_id):
            return  # the epic's or lane's next task reuses the worktree; released later
        manager = WorktreeManager(view.started.repo_path, target_branch=view.started.target_branch)
        path = view.finished[task_id].worktree_dir if task_id in view.finished else ""
        if path:  # kept as a spare: the next epic's or lane's new worktree takes it over
            await self._git.run_in_turn(Priority.LATER, _release_quietly, manager, _worktree_name(path),
                                        not view.started.settings.merge.keep_branches, True)

    async def _cleanup_run(self, view: RunView) -> None:
        manager = WorktreeManager(view.started.repo_path, target_branch=view.started.target_branch)
        keep = view.started.settings.merge.keep_branches
        # each worktree once: an epic's (or a lane's) tasks all name the same one (a 1,000-task run by
        # epic released 100 worktrees 1,000 times, each a repository open and the lock)
        names = {_worktree_name(finished.worktree_dir) for task_id in view.merged
                 if (finished := view.finished.get(task_id)) and finished.worktree_dir}
        for name in sorted(names):
            await self._git.run_in_turn(Priority.LATER, _release_quietly, manager, name, not keep)
        # released checkouts kept for reuse: none after the run
        await self._git.run_in_turn(Priority.LATER, manager.drop_spares)

    async def _announce_batches(self, view: RunView, cause: ev.Event) -> None:
        run = view.started
        for index in domain.complete_batches(view):
            e = cause.caused(ev.BatchMerged, aggregate_id=f"{run.run_id}-{index}", run_id=run.run_id,
                             batch=index, task_ids=list(view.batches[index]))
            await self.bus.publish_in_run(e, run.run_id, msg_id=f"{run.run_id}:batch:{index}:BatchMerged")
            view.announced.add(index)

    async def serve(self, stop: asyncio.Event) -> None:
        await git_worker().warm(gitjobs.__name__)
        subjects = [self.bus.type_filter(t) for t in
                    ("RunStarted", "BatchesComputed", "AgentFinished", "WorkCommitted", "MergeRequested", "BranchMerged",
                     "BranchReset", "BatchMerged", "RunCompleted", "RunFailed", "RunCancelled")]
        try:
            if not await unless_stopped(self.catch_up(), stop):
                return
            # a few at once: merges' bus round trips (run check, BranchMerged, ack) overlap the others'
            # git work, which stays serial in order on the merger's one git thread (agents often end
            # together: the first tasks of a run, a wave of dependents)
            await self.bus.consume("merger", subjects, self.handle, stop=stop, ack_wait=self.ack_wait, max_deliver=5,
                                   concurrency=4)
        finally:
            self._git.close()


def _worktree_name(path: str) -> str:
    """The folder name (TaskReady.worktree) of a worktree path (AgentFinished.worktree_dir)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _release_quietly(manager: WorktreeManager, name: str, delete_branch: bool, keep_for_reuse: bool = False) -> None:
    try:
        manager.release(name, delete_branch=delete_branch, keep_for_reuse=keep_for_reuse)
    except GitError as exc:  # already gone: cleanup is best effort, the merge is what counts
        log.info("cleanup of worktree %s: %s", name, exc)


async def serve(bus: Bus, config: Config, stop: asyncio.Event) -> None:
    rt = config.runtime
    with contextlib.ExitStack() as stack:
        if rt.git_http_port:  # executors on other machines reach the canonical repositories here
            stack.enter_context(gitserve.serving(rt.git_root, rt.git_token or "", host=rt.git_http_host,
                                                 port=rt.git_http_port))
        await Merger(bus, ack_wait=rt.merger_ack_wait_s, crash_after_ref_update=rt.merger_crash_after_ref_update).serve(stop)
