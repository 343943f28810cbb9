"""Pure views over projection rows: a task's display state, a run's totals, its ETA.

ETA (docs/api.md): the mean wall time of the run's finished tasks (AgentStarted to
AgentFinished of their last attempt) × the tasks still to do / the slots that can work on
them (min(max_concurrency, tasks to do)). Before any task has finished it falls back to the
plan's `estimate_minutes` of the tasks still to do, divided the same way.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Iterable

from shared.config import RunSettings

# Tasks whose work is over, whatever the outcome; the rest are still to do.
FINISHED = {"done", "failed", "blocked", "cancelled"}
RUN_ENDED = {"completed", "failed", "cancelled"}


def task_state(task: dict[str, Any]) -> str:
    """What a card shows: the task status, except that a done task shows how its merge went."""
    if task.get("merge_status") == "conflict":
        return "conflict"
    if task.get("merge_status") == "resolving" and task.get("status") not in ("failed", "cancelled"):
        return "resolving"  # a resolution agent is merging the target branch into the task's branch
    if task.get("status") == "done" and task.get("merge_status") == "merged":
        return "merged"
    return str(task.get("status") or "pending")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


def state_counts(tasks: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tasks:
        state = task_state(t)
        counts[state] = counts.get(state, 0) + 1
    return counts


def estimate_eta(run: dict[str, Any], tasks: list[dict[str, Any]], now: datetime,
                 estimates: dict[str, float] | None = None) -> dict[str, Any]:
    """Seconds left for the run, with the basis of the guess (see the module docstring)."""
    remaining = [t for t in tasks if t.get("status") not in FINISHED]
    if run.get("status") in RUN_ENDED or not remaining:
        return {"seconds": 0.0, "basis": "finished", "remaining_tasks": 0, "finishes_at": None}
    concurrency = RunSettings.of(run.get("settings")).parallel.concurrency
    slots = max(1, min(concurrency, len(remaining)))
    durations = [d for t in tasks if t.get("status") == "done"
                 for d in [seconds_between(t.get("started_at"), t.get("finished_at"))] if d is not None]
    if durations:
        per_task, basis = sum(durations) / len(durations), "finished_tasks"
        total = per_task * len(remaining)
    elif estimates:
        per_task, basis = None, "plan_estimates"
        total = sum(60.0 * float(estimates.get(str(t["id"]), 1.0)) for t in remaining)
    else:
        return {"seconds": None, "basis": "unknown", "remaining_tasks": len(remaining), "finishes_at": None}
    seconds = total / slots
    finishes = now.timestamp() + seconds
    return {"seconds": round(seconds, 1), "basis": basis, "remaining_tasks": len(remaining), "slots": slots,
            "per_task_seconds": None if per_task is None else round(per_task, 1),
            "finishes_at": datetime.fromtimestamp(finishes, tz=now.tzinfo).isoformat() if math.isfinite(finishes) else None}


def token_totals(costs: Iterable[dict[str, Any]]) -> dict[str, int]:
    keys = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    out = {k: 0 for k in keys}
    for row in costs:
        for k in keys:
            out[k] += int(row.get(k) or 0)
    out["total"] = out["input_tokens"] + out["output_tokens"] + out["cache_read_tokens"] + out["cache_write_tokens"]
    return out


def running_agents(tasks: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    out = []
    for t in tasks:
        if t.get("status") != "running":
            continue
        started = parse_time(t.get("started_at"))
        out.append({"task_id": t["id"], "title": t["title"], "epic_id": t["epic_id"], "attempt": t.get("attempt", 0),
                    "model": t.get("model", ""), "started_at": t.get("started_at", ""),
                    "elapsed_s": round((now - started).total_seconds(), 1) if started else None,
                    "cost_usd": t.get("cost_usd", 0.0)})
    return out


def batch_progress(batches: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    states = {t["id"]: task_state(t) for t in tasks}
    out = []
    for b in sorted(batches, key=lambda b: b["batch"]):
        ids = [str(i) for i in b.get("task_ids") or []]
        counts: dict[str, int] = {}
        for i in ids:
            counts[states.get(i, "pending")] = counts.get(states.get(i, "pending"), 0) + 1
        finished = sum(n for s, n in counts.items() if s in FINISHED | {"merged", "conflict"})
        out.append({"batch": b["batch"], "task_ids": ids, "status": b.get("status", "pending"),
                    "total": len(ids), "finished": finished, "merged": counts.get("merged", 0), "by_state": counts})
    return out
