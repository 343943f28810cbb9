"""Projection of events into PostgreSQL rows: one function per event type (PROJECTORS; the types
with no rows are listed in IGNORED), each an upsert, applied in log order with the tracking
position in the same transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Awaitable, Callable

import msgspec
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import db
from shared import events as ev

PROJECTION = "ledger"


def _plan_rows(e: ev.RunStarted) -> tuple[list[dict], list[dict]]:
    epic_rows, task_rows = [], []
    position = 0
    for epic_pos, epic in enumerate(e.plan.get("epics", [])):
        epic_id = str(epic.get("id"))
        epic_rows.append({
            "run_id": e.run_id, "id": epic_id, "project_id": e.project_id, "name": str(epic.get("name", "")),
            "priority": int(epic.get("priority", 3)), "depends_on": [str(d) for d in epic.get("depends_on", [])],
            "position": epic_pos,
        })
        for task in epic.get("tasks", []):
            task_rows.append({
                "run_id": e.run_id, "id": str(task.get("id")), "project_id": e.project_id, "epic_id": epic_id,
                "title": str(task.get("title", "")), "priority": int(task.get("priority", 3)),
                "depends_on": [str(d) for d in task.get("depends_on", [])],
                "dependency_type": str(task.get("dependency_type", "hard")),
                "domain": str(task.get("domain", "general")), "complexity": str(task.get("complexity") or ""),
                "position": position,
            })
            position += 1
    return epic_rows, task_rows


async def _upsert(conn: AsyncConnection, table, rows: list[dict] | dict, keys: list[str]) -> None:
    rows = [rows] if isinstance(rows, dict) else rows
    if not rows:
        return
    # Parameters apart from the statement: compiled once and cached, rows sent as one executemany.
    stmt = insert(table)
    cols = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    await conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=cols) if cols
                       else stmt.on_conflict_do_nothing(index_elements=keys), rows if len(rows) > 1 else rows[0])


def _task(e: ev.TaskEvent):
    t = db.tasks
    return update(t).where(t.c.run_id == e.run_id, t.c.id == e.task_id)


def _attempt(e: ev.TaskEvent, attempt: int):
    a = db.attempts
    return update(a).where(a.c.run_id == e.run_id, a.c.task_id == e.task_id, a.c.attempt == attempt)


def _run(run_id: str):
    return update(db.runs).where(db.runs.c.id == run_id)


# One projection per event type; every type is in PROJECTORS or IGNORED (a unit test checks).
async def _project_created(conn: AsyncConnection, e: ev.ProjectCreated) -> None:
    await _upsert(conn, db.projects, {"id": e.project_id, "name": e.name, "repo_path": e.repo_path,
                                      "target_branch": e.target_branch, "created_at": e.occurred_at}, ["id"])


async def _run_started(conn: AsyncConnection, e: ev.RunStarted) -> None:
    await _upsert(conn, db.runs, {
        "id": e.run_id, "project_id": e.project_id, "plan_name": str(e.plan.get("name", "")),
        "status": "running", "repo_path": e.repo_path, "target_branch": e.target_branch,
        "settings": e.settings.to_dict(), "started_at": e.occurred_at}, ["id"])
    epic_rows, task_rows = _plan_rows(e)
    await _upsert(conn, db.epics, epic_rows, ["run_id", "id"])
    await _upsert(conn, db.tasks, task_rows, ["run_id", "id"])


async def _batches_computed(conn: AsyncConnection, e: ev.BatchesComputed) -> None:
    await _upsert(conn, db.parallel_batches, [
        {"run_id": e.run_id, "batch": i, "task_ids": ids} for i, ids in enumerate(e.batches)],
        ["run_id", "batch"])
    for i, ids in enumerate(e.batches):
        await conn.execute(update(db.tasks).where(db.tasks.c.run_id == e.run_id, db.tasks.c.id.in_(ids))
                           .values(batch=i))


async def _task_ready(conn: AsyncConnection, e: ev.TaskReady) -> None:
    resolving = {"merge_status": "resolving"} if e.purpose == "resolve_conflict" else {}
    await conn.execute(_task(e).values(status="ready", attempt=e.attempt, model=e.model, branch=e.branch,
                                       worktree=e.worktree, reason="", **resolving))
    await _upsert(conn, db.attempts, {"run_id": e.run_id, "task_id": e.task_id, "attempt": e.attempt,
                                      "model": e.model, "provider": e.provider, "purpose": e.purpose,
                                      "outcome": "queued"},
                  ["run_id", "task_id", "attempt"])


async def _agent_started(conn: AsyncConnection, e: ev.AgentStarted) -> None:
    await conn.execute(_task(e).values(status="running", started_at=e.occurred_at))
    await conn.execute(_attempt(e, e.attempt).values(outcome="running", model=e.model, provider=e.provider,
                                                     started_at=e.occurred_at))


async def _worktree_created(conn: AsyncConnection, e: ev.WorktreeCreated) -> None:
    await _upsert(conn, db.worktrees, {"path": e.path, "run_id": e.run_id, "task_id": e.task_id,
                                       "branch": e.branch, "base_commit": e.base_commit, "status": "active",
                                       "created_at": e.occurred_at}, ["path"])


async def _agent_finished(conn: AsyncConnection, e: ev.AgentFinished) -> None:
    await conn.execute(_attempt(e, e.attempt).values(
        outcome=e.outcome, summary=e.summary, error=e.error, commit=e.commit, turns=e.turns,
        duration_s=e.duration_s, input_tokens=e.input_tokens, output_tokens=e.output_tokens,
        cache_read_tokens=e.cache_read_tokens, cache_write_tokens=e.cache_write_tokens,
        cost_usd=exact_cost(e), finished_at=e.occurred_at,
        **({"model": e.model} if e.model else {})))
    await conn.execute(_task(e).values(summary=e.summary, commit=e.commit, finished_at=e.occurred_at))


async def _task_completed(conn: AsyncConnection, e: ev.TaskCompleted) -> None:
    await conn.execute(_task(e).values(status="done", commit=e.commit, reason=""))


async def _task_failed(conn: AsyncConnection, e: ev.TaskFailed) -> None:
    await conn.execute(_task(e).values(status="failed" if e.final else "retrying", reason=e.reason))


async def _task_blocked(conn: AsyncConnection, e: ev.TaskBlocked) -> None:
    await conn.execute(_task(e).values(status="blocked", reason=e.reason))


async def _task_cancelled(conn: AsyncConnection, e: ev.TaskCancelled) -> None:
    await conn.execute(_task(e).values(status="cancelled", reason=e.reason))


async def _cost_recorded(conn: AsyncConnection, e: ev.CostRecorded) -> None:
    await _project_costs(conn, [e])


async def _task_deferred(conn: AsyncConnection, e: ev.TaskDeferred) -> None:
    await conn.execute(_task(e).values(status="pending", reason=f"{e.reason}: {e.detail}" if e.detail else e.reason))


async def _merge_result(conn: AsyncConnection, e: ev.BranchMerged | ev.MergeConflicted) -> None:
    merged = isinstance(e, ev.BranchMerged)
    await _upsert(conn, db.merges, {
        "event_id": e.event_id, "run_id": e.run_id, "task_id": e.task_id, "branch": e.branch,
        "target_branch": e.target_branch, "status": e.status if merged else "conflict",
        "commit": e.commit if merged else "", "conflicts": [] if merged else msgspec.to_builtins(e.conflicts),
        "occurred_at": e.occurred_at}, ["event_id"])
    t = db.tasks
    await conn.execute(update(t).where(t.c.run_id == e.run_id, t.c.id == e.task_id).values(
        merge_status="merged" if merged else "conflict",
        merge_commit=e.commit if merged else "",
        reason="" if merged else (e.reason or "merge conflict")))
    if merged:
        await conn.execute(update(db.worktrees).where(db.worktrees.c.run_id == e.run_id,
                                                      db.worktrees.c.task_id == e.task_id).values(status="merged"))


async def _conflict_escalated(conn: AsyncConnection, e: ev.ConflictEscalated) -> None:
    await conn.execute(_task(e).values(status="done", merge_status="conflict", reason=e.reason))


async def _branch_reset(conn: AsyncConnection, e: ev.BranchReset) -> None:
    """A person's rerun: the task waits for its new attempt on the target as it is now."""
    await conn.execute(_task(e).values(status="pending", merge_status="", merge_commit="",
                                       reason=f"rerun on {e.target_branch} requested by {e.requested_by or 'a person'}"))


async def _batch_merged(conn: AsyncConnection, e: ev.BatchMerged) -> None:
    b = db.parallel_batches
    await conn.execute(update(b).where(b.c.run_id == e.run_id, b.c.batch == e.batch).values(status="merged"))


async def _run_ended(conn: AsyncConnection, e: ev.RunCompleted | ev.RunFailed | ev.RunCancelled) -> None:
    status = {"RunCompleted": "completed", "RunFailed": "failed", "RunCancelled": "cancelled"}[e.type]
    values: dict[str, Any] = {"status": status, "ended_at": e.occurred_at}
    if not isinstance(e, ev.RunCancelled):
        values.update(counts=msgspec.to_builtins(e.counts), stats=msgspec.to_builtins(e.stats))
    values["reason"] = getattr(e, "reason", "")
    await conn.execute(_run(e.run_id).values(**values))


async def _budget_alert(conn: AsyncConnection, e: ev.BudgetWarning | ev.BudgetExhausted) -> None:
    level = "exhausted" if isinstance(e, ev.BudgetExhausted) else "warning"
    await _upsert(conn, db.budget_alerts, {"run_id": e.run_id, "level": level}, ["run_id", "level"])


async def _expertise_updated(conn: AsyncConnection, e: ev.ExpertiseUpdated) -> None:
    await _upsert(conn, db.expertise_files, {
        "project_id": e.project_id, "domain": e.domain, "version": e.version, "lines": e.lines,
        "content": e.content, "updated_at": e.occurred_at}, ["project_id", "domain", "version"])


async def _delivery_failed(conn: AsyncConnection, e: ev.DeliveryFailed) -> None:
    """The reason goes on the task and its attempt, or on the run, so `status` and the UI show it."""
    if e.run_id and e.task_id:
        await conn.execute(_task(e).values(reason=e.reason))
        if e.attempt:
            await conn.execute(_attempt(e, e.attempt).values(error=e.reason))
    elif e.run_id:
        await conn.execute(_run(e.run_id).values(reason=e.reason))


PROJECTORS: dict[type[ev.Event], Callable[[AsyncConnection, Any], Awaitable[None]]] = {
    ev.ProjectCreated: _project_created,
    ev.RunStarted: _run_started,
    ev.BatchesComputed: _batches_computed,
    ev.TaskReady: _task_ready,
    ev.AgentStarted: _agent_started,
    ev.WorktreeCreated: _worktree_created,
    ev.AgentFinished: _agent_finished,
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
    ev.LearningExtracted, ev.DiscoveryReported,  # expertise is projected from ExpertiseUpdated
    ev.TaskBlockRequested,                # the agent's request: what it leads to (TaskBlocked, ...) is projected
    ev.BudgetSet,                         # budgets are read from the log by the planner and `costs`
})


async def project(conn: AsyncConnection, e: ev.Event) -> None:
    """Apply one event to the projection rows."""
    handler = PROJECTORS.get(type(e))
    if handler is not None:
        await handler(conn, e)


async def _project_costs(conn: AsyncConnection, costs: list[ev.CostRecorded]) -> None:
    """Many CostRecorded in a few statements: the cost rows at once, then one sum per task and per run."""
    if not costs:
        return
    rows = [_cost_row(e) for e in costs]
    for i in range(0, len(rows), 500):
        await _upsert(conn, db.agent_costs, rows[i:i + 500], ["event_id"])
    per_task: dict[tuple[str, str], Decimal] = {}
    per_run: dict[str, Decimal] = {}
    for e in costs:
        cost = exact_cost(e)
        per_task[(e.run_id, e.task_id)] = per_task.get((e.run_id, e.task_id), Decimal(0)) + cost
        per_run[e.run_id] = per_run.get(e.run_id, Decimal(0)) + cost
    t, r = db.tasks, db.runs
    await conn.execute(update(t).where(t.c.run_id == bindparam("r"), t.c.id == bindparam("t"))
                       .values(cost_usd=t.c.cost_usd + bindparam("c")),
                       [{"r": run, "t": task, "c": c} for (run, task), c in per_task.items()])
    await conn.execute(update(r).where(r.c.id == bindparam("r")).values(cost_usd=r.c.cost_usd + bindparam("c")),
                       [{"r": run, "c": c} for run, c in per_run.items()])


def _cost_row(e: ev.CostRecorded) -> dict[str, Any]:
    return {"event_id": e.event_id, "project_id": e.project_id, "run_id": e.run_id, "task_id": e.task_id,
            "attempt": e.attempt, "model": e.model, "input_tokens": e.input_tokens,
            "output_tokens": e.output_tokens, "cache_read_tokens": e.cache_read_tokens,
            "cache_write_tokens": e.cache_write_tokens, "cost_usd": exact_cost(e), "occurred_at": e.occurred_at}


def exact_cost(e: ev.CostRecorded | ev.AgentFinished) -> Decimal:
    """The event's exact cost: its decimal string, or (events from before it had one) its float as printed."""
    return Decimal(e.cost_exact) if e.cost_exact else Decimal(repr(e.cost_usd))


def _event_log_row(seq: int, e: ev.Event) -> dict[str, Any]:
    return {"seq": seq, "event_id": e.event_id, "project_id": e.project_id, "run_id": getattr(e, "run_id", "") or "",
            "type": e.type, "aggregate": e.aggregate, "aggregate_id": e.aggregate_id,
            "occurred_at": e.occurred_at, "data": ev.to_dict(e)}


Reader = Callable[[int, int], Awaitable[list[tuple[int, ev.Event]]]]


async def apply_batch(conn: AsyncConnection, batch: list[tuple[int, ev.Event]], read_gap: Reader,
                      stream: str = "") -> list[ev.Event]:
    """Apply events (in log order) exactly once in the caller's transaction, filling any gap,
    and move the tracking position to the last of them in that same transaction. `stream`
    names the log (see Bus.stream_identity): a position taken from another log (a stream
    deleted and made again) is not trusted, the new log is applied from its start.
    Returns the events of `batch` that were new."""
    t = db.projection_tracking
    row = (await conn.execute(select(t.c.last_stream_seq, t.c.stream).where(t.c.projection == PROJECTION)
                              .with_for_update())).first()
    position = int(row[0]) if row else 0
    if row is not None and stream and row[1] and row[1] != stream:
        position = 0
    applied: list[ev.Event] = []
    log_rows: list[dict[str, Any]] = []
    costs: list[ev.CostRecorded] = []

    async def one(seq: int, event: ev.Event) -> None:
        if isinstance(event, ev.CostRecorded):
            costs.append(event)  # sums commute with every other row change: applied together below
        else:
            await project(conn, event)
        log_rows.append(_event_log_row(seq, event))

    for seq, event in batch:
        if seq <= position:
            continue
        if seq > position + 1:
            for gap_seq, gap_event in await read_gap(position + 1, seq - 1):
                await one(gap_seq, gap_event)
        await one(seq, event)
        applied.append(event)
        position = seq
    if not applied:
        return []
    await _project_costs(conn, costs)
    for i in range(0, len(log_rows), 500):  # one statement per 500 rows, well under PostgreSQL's parameter limit
        await _upsert(conn, db.event_log, log_rows[i:i + 500], ["seq"])
    tracking: dict[str, Any] = {"projection": PROJECTION, "last_stream_seq": position}
    if stream:
        tracking["stream"] = stream
    await _upsert(conn, t, tracking, ["projection"])
    return applied
