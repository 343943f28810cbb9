"""Projection of events into PostgreSQL rows, as pure functions: one per event type (PROJECTORS;
the types with no rows are listed in IGNORED), each returning the row changes its event makes.
services/ledger/writer.py applies them in log order with the tracking position, in one
transaction per batch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, NamedTuple

import msgspec

from shared import events as ev

PROJECTION = "ledger"


class Upsert(NamedTuple):
    """Insert `values` (keyed by the table's primary key); if the row exists, set `update`
    of them (None: every column but the key; (): nothing)."""

    table: str
    values: dict[str, Any]
    update: tuple[str, ...] | None = None


class Update(NamedTuple):
    """Set `values` on the row of `table` whose primary key is `key` (none: nothing happens)."""

    table: str
    key: dict[str, Any]
    values: dict[str, Any]


class UpdateWhere(NamedTuple):
    """Set `values` on every row of `table` matching `where` (columns outside the primary key)."""

    table: str
    where: dict[str, Any]
    values: dict[str, Any]


class Add(NamedTuple):
    """Add `amount` to `column` of the row whose primary key is `key` (sums commute with every
    other change: the writer adds them up and applies them last)."""

    table: str
    key: dict[str, Any]
    column: str
    amount: Decimal


Change = Upsert | Update | UpdateWhere | Add


def _plan_rows(e: ev.RunStarted) -> tuple[list[dict], list[dict]]:
    epic_rows, task_rows = [], []
    position = 0
    for epic_pos, epic in enumerate(e.plan.epics):
        epic_rows.append({
            "run_id": e.run_id, "id": epic.id, "project_id": e.project_id, "name": epic.name,
            "priority": epic.priority, "depends_on": list(epic.depends_on), "position": epic_pos,
        })
        for task in epic.tasks:
            task_rows.append({
                "run_id": e.run_id, "id": task.id, "project_id": e.project_id, "epic_id": epic.id,
                "title": task.title, "priority": task.priority, "depends_on": list(task.depends_on),
                "dependency_type": task.dependency_type, "domain": task.domain, "complexity": task.complexity or "",
                "position": position,
            })
            position += 1
    return epic_rows, task_rows


def _task(e: ev.TaskEvent, **values: Any) -> Update:
    return Update("tasks", {"run_id": e.run_id, "id": e.task_id}, values)


def _attempt(e: ev.TaskEvent, attempt: int, **values: Any) -> Update:
    return Update("attempts", {"run_id": e.run_id, "task_id": e.task_id, "attempt": attempt}, values)


def _run(run_id: str, **values: Any) -> Update:
    return Update("runs", {"id": run_id}, values)


# One projection per event type; every type is in PROJECTORS or IGNORED (a unit test checks).
def _project_created(e: ev.ProjectCreated) -> list[Change]:
    return [Upsert("projects", {"id": e.project_id, "name": e.name, "repo_path": e.repo_path,
                                "target_branch": e.target_branch, "created_at": e.occurred_at})]


def _run_started(e: ev.RunStarted) -> list[Change]:
    epic_rows, task_rows = _plan_rows(e)
    return [Upsert("runs", {
        "id": e.run_id, "project_id": e.project_id, "plan_name": e.plan.name,
        "status": "running", "repo_path": e.repo_path, "target_branch": e.target_branch,
        "settings": e.settings.to_dict(), "started_at": e.occurred_at}),
        *(Upsert("epics", row) for row in epic_rows), *(Upsert("tasks", row) for row in task_rows)]


def _batches_computed(e: ev.BatchesComputed) -> list[Change]:
    out: list[Change] = [Upsert("parallel_batches", {"run_id": e.run_id, "batch": i, "task_ids": ids})
                         for i, ids in enumerate(e.batches)]
    for i, ids in enumerate(e.batches):
        out += [Update("tasks", {"run_id": e.run_id, "id": task_id}, {"batch": i}) for task_id in ids]
    return out


def _task_ready(e: ev.TaskReady) -> list[Change]:
    resolving = {"merge_status": "resolving"} if e.purpose == "resolve_conflict" else {}
    return [_task(e, status="ready", attempt=e.attempt, model=e.model, branch=e.branch, worktree=e.worktree,
                  reason="", **resolving),
            Upsert("attempts", {"run_id": e.run_id, "task_id": e.task_id, "attempt": e.attempt, "model": e.model,
                                "provider": e.provider, "purpose": e.purpose, "outcome": "queued"})]


def _agent_started(e: ev.AgentStarted) -> list[Change]:
    return [_task(e, status="running", started_at=e.occurred_at),
            _attempt(e, e.attempt, outcome="running", model=e.model, provider=e.provider, started_at=e.occurred_at)]


def _worktree_created(e: ev.WorktreeCreated) -> list[Change]:
    return [Upsert("worktrees", {"path": e.path, "run_id": e.run_id, "task_id": e.task_id, "branch": e.branch,
                                 "base_commit": e.base_commit, "status": "active", "created_at": e.occurred_at})]


def _agent_finished(e: ev.AgentFinished) -> list[Change]:
    commit = {} if e.commit_follows else {"commit": e.commit}  # else its WorkCommitted's
    return [_attempt(e, e.attempt, outcome=e.outcome, summary=e.summary, error=e.error, **commit,
                     turns=e.turns, duration_s=float(e.duration_s), input_tokens=e.input_tokens,
                     output_tokens=e.output_tokens, cache_read_tokens=e.cache_read_tokens,
                     cache_write_tokens=e.cache_write_tokens, cost_usd=exact_cost(e), finished_at=e.occurred_at,
                     **({"model": e.model} if e.model else {})),
            _task(e, summary=e.summary, **commit, finished_at=e.occurred_at)]


def _work_committed(e: ev.WorkCommitted) -> list[Change]:
    if e.error:  # the attempt failed after all
        return [_attempt(e, e.attempt, outcome="failure", error=e.error)]
    return [_attempt(e, e.attempt, commit=e.commit), _task(e, commit=e.commit)]


def _task_completed(e: ev.TaskCompleted) -> list[Change]:
    return [_task(e, status="done", commit=e.commit, reason="")]


def _task_failed(e: ev.TaskFailed) -> list[Change]:
    return [_task(e, status="failed" if e.final else "retrying", reason=e.reason)]


def _task_blocked(e: ev.TaskBlocked) -> list[Change]:
    return [_task(e, status="blocked", reason=e.reason)]


def _task_cancelled(e: ev.TaskCancelled) -> list[Change]:
    return [_task(e, status="cancelled", reason=e.reason)]


def _cost_recorded(e: ev.CostRecorded) -> list[Change]:
    cost = exact_cost(e)
    return [Upsert("agent_costs", {
        "event_id": e.event_id, "project_id": e.project_id, "run_id": e.run_id, "task_id": e.task_id,
        "attempt": e.attempt, "model": e.model, "input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
        "cache_read_tokens": e.cache_read_tokens, "cache_write_tokens": e.cache_write_tokens, "cost_usd": cost,
        "occurred_at": e.occurred_at}),
        Add("tasks", {"run_id": e.run_id, "id": e.task_id}, "cost_usd", cost),
        Add("runs", {"id": e.run_id}, "cost_usd", cost)]


def _task_deferred(e: ev.TaskDeferred) -> list[Change]:
    return [_task(e, status="pending", reason=f"{e.reason}: {e.detail}" if e.detail else e.reason)]


def _merge_result(e: ev.BranchMerged | ev.MergeConflicted) -> list[Change]:
    merged = isinstance(e, ev.BranchMerged)
    out: list[Change] = [
        Upsert("merges", {
            "event_id": e.event_id, "run_id": e.run_id, "task_id": e.task_id, "branch": e.branch,
            "target_branch": e.target_branch, "status": e.status if merged else "conflict",
            "commit": e.commit if merged else "", "conflicts": [] if merged else msgspec.to_builtins(e.conflicts),
            "occurred_at": e.occurred_at}),
        _task(e, merge_status="merged" if merged else "conflict", merge_commit=e.commit if merged else "",
              reason="" if merged else (e.reason or "merge conflict"))]
    if merged:
        out.append(UpdateWhere("worktrees", {"run_id": e.run_id, "task_id": e.task_id}, {"status": "merged"}))
    return out


def _conflict_escalated(e: ev.ConflictEscalated) -> list[Change]:
    return [_task(e, status="done", merge_status="conflict", reason=e.reason)]


def _branch_reset(e: ev.BranchReset) -> list[Change]:
    """A person's rerun: the task waits for its new attempt on the target as it is now."""
    return [_task(e, status="pending", merge_status="", merge_commit="",
                  reason=f"rerun on {e.target_branch} requested by {e.requested_by or 'a person'}")]


def _batch_merged(e: ev.BatchMerged) -> list[Change]:
    return [Update("parallel_batches", {"run_id": e.run_id, "batch": e.batch}, {"status": "merged"})]


def _run_ended(e: ev.RunCompleted | ev.RunFailed | ev.RunCancelled) -> list[Change]:
    status = {"RunCompleted": "completed", "RunFailed": "failed", "RunCancelled": "cancelled"}[e.type]
    values: dict[str, Any] = {"status": status, "ended_at": e.occurred_at}
    if not isinstance(e, ev.RunCancelled):
        values.update(counts=msgspec.to_builtins(e.counts), stats=msgspec.to_builtins(e.stats))
    values["reason"] = getattr(e, "reason", "")
    return [_run(e.run_id, **values)]


def _budget_alert(e: ev.BudgetWarning | ev.BudgetExhausted) -> list[Change]:
    level = "exhausted" if isinstance(e, ev.BudgetExhausted) else "warning"
    return [Upsert("budget_alerts", {"run_id": e.run_id, "level": level}, ())]


def _expertise_updated(e: ev.ExpertiseUpdated) -> list[Change]:
    return [Upsert("expertise_files", {"project_id": e.project_id, "domain": e.domain, "version": e.version,
                                       "lines": e.lines, "content": e.yaml(), "updated_at": e.occurred_at})]


def _delivery_failed(e: ev.DeliveryFailed) -> list[Change]:
    """The reason goes on the task and its attempt, or on the run, so `status` and the UI show it."""
    if e.run_id and e.task_id:
        return [_task(e, reason=e.reason), *([_attempt(e, e.attempt, error=e.reason)] if e.attempt else [])]
    if e.run_id:
        return [_run(e.run_id, reason=e.reason)]
    return []


PROJECTORS: dict[type[ev.Event], Callable[[Any], list[Change]]] = {
    ev.ProjectCreated: _project_created,
    ev.RunStarted: _run_started,
    ev.BatchesComputed: _batches_computed,
    ev.TaskReady: _task_ready,
    ev.AgentStarted: _agent_started,
    ev.WorktreeCreated: _worktree_created,
    ev.AgentFinished: _agent_finished,
    ev.WorkCommitted: _work_committed,
    ev.TaskCompleted: _task_completed,
    ev.TaskFailed: _task_failed,
    ev.TaskBlocked: _task_blocked,
    ev.TaskCancelled: _task_cancelled,
    ev.CostRecorded: _cost_recorded,
    ev.TaskDeferred: _task_deferred,
    ev.BranchMerged: _merge_result,
    ev.MergeConflicted: _merge_result,
    ev.ConflictEscalated: _conflict_escalated,
    ev.BranchReset: _branch_reset,
    ev.BatchMerged: _batch_merged,
    ev.RunCompleted: _run_ended,
    ev.RunFailed: _run_ended,
    ev.RunCancelled: _run_ended,
    ev.BudgetWarning: _budget_alert,
    ev.BudgetExhausted: _budget_alert,
    ev.ExpertiseUpdated: _expertise_updated,
    ev.DeliveryFailed: _delivery_failed,
}

# Events with no row of their own (the event log still lists each): a new event type must be
# added to PROJECTORS or here, or tests/unit/test_projector_table.py fails.
IGNORED: frozenset[type[ev.Event]] = frozenset({
    ev.PlanRequested, ev.PlanProduced, ev.PlanRejected, ev.PlanApproved,  # plans: read from the log (session 0)
    ev.RunPaused, ev.RunResumed,          # a pause shows through its reason on the tasks it deferred
    ev.MergeRequested,                    # the merge it asks for is projected when it happens
    ev.AgentAdmitted,                     # a slot given: the task shows "running" once its agent starts
    ev.LearningExtracted, ev.DiscoveryReported,  # expertise is projected from ExpertiseUpdated
    ev.TaskBlockRequested,                # the agent's request: what it leads to (TaskBlocked, ...) is projected
    ev.BudgetSet,                         # budgets are read from the log by the planner and `costs`
})


def changes(e: ev.Event) -> list[Change]:
    """The row changes one event makes (none for the types in IGNORED)."""
    handler = PROJECTORS.get(type(e))
    return handler(e) if handler is not None else []


def exact_cost(e: ev.CostRecorded | ev.AgentFinished) -> Decimal:
    """The event's exact cost: its decimal string, or (events from before it had one) its float as printed."""
    return Decimal(e.cost_exact) if e.cost_exact else Decimal(repr(e.cost_usd))
