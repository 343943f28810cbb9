"""Queries over the projection tables, shaped for the API and the CLI (plain dicts, JSON-ready).

One read model for both front doors: `yokeflow status` and the gateway read runs through here,
so neither imports the other."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
from sqlalchemy import and_, case, func, select

from shared import db
from shared import events as ev
from shared.expertise.measures import learning_measures
from shared.db import Database
from shared import summary
from shared.forecast import forecast
from shared.plan import PlanDoc


async def list_projects(database: Database) -> list[dict[str, Any]]:
    projects = await database.fetch(select(db.projects).order_by(db.projects.c.created_at.desc()))
    counts = {r["project_id"]: r for r in await database.fetch(
        select(db.runs.c.project_id, func.count().label("runs"), func.max(db.runs.c.started_at).label("last_run_at"))
        .group_by(db.runs.c.project_id))}
    for p in projects:
        c = counts.get(p["id"], {})
        p["runs"] = int(c.get("runs") or 0)
        p["last_run_at"] = c.get("last_run_at") or ""
    return projects


async def get_project(database: Database, project_id: str) -> dict[str, Any] | None:
    rows = await database.fetch(select(db.projects).where(db.projects.c.id == project_id))
    return rows[0] if rows else None


async def list_runs(database: Database, project_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    r = db.runs
    stmt = select(r.c.id, r.c.project_id, r.c.plan_name, r.c.status, r.c.repo_path, r.c.target_branch, r.c.reason,
                  r.c.cost_usd, r.c.started_at, r.c.ended_at).order_by(r.c.started_at.desc()).limit(limit)
    if project_id:
        stmt = stmt.where(r.c.project_id == project_id)
    runs = await database.fetch(stmt)
    if not runs:
        return []
    t = db.tasks
    rows = await database.fetch(select(t.c.run_id, t.c.status, t.c.merge_status, func.count().label("n"))
                                .where(t.c.run_id.in_([run["id"] for run in runs]))
                                .group_by(t.c.run_id, t.c.status, t.c.merge_status))
    for run in runs:
        states: dict[str, int] = {}
        for row in rows:
            if row["run_id"] == run["id"]:
                state = summary.task_state(row)
                states[state] = states.get(state, 0) + int(row["n"])
        run["tasks"] = {"total": sum(states.values()), "by_state": states}
    return runs


async def get_run(database: Database, run_id: str) -> dict[str, Any] | None:
    rows = await database.fetch(select(db.runs).where(db.runs.c.id == run_id))
    return rows[0] if rows else None


async def run_plan(database: Database, run_id: str) -> PlanDoc:
    """The plan the run was started with, from the RunStarted entry of the event log (empty if not indexed)."""
    e = db.event_log
    rows = await database.fetch(select(e.c.data).where(and_(e.c.run_id == run_id, e.c.type == "RunStarted")).limit(1))
    data = (rows[0]["data"] or {}).get("plan") if rows else None
    return msgspec.convert(data, PlanDoc) if data else PlanDoc(name="")


async def costs_by_model(database: Database, project_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """Model calls, tokens and USD per (run, model) of a project."""
    c = db.agent_costs
    stmt = (select(c.c.run_id, c.c.model, func.count().label("calls"), func.sum(c.c.input_tokens).label("input_tokens"),
                   func.sum(c.c.output_tokens).label("output_tokens"), func.sum(c.c.cost_usd).label("cost_usd"))
            .where(c.c.project_id == project_id).group_by(c.c.run_id, c.c.model).order_by(c.c.run_id, c.c.model))
    if run_id:
        stmt = stmt.where(c.c.run_id == run_id)
    return [{"run_id": r["run_id"], "model": r["model"], "calls": int(r["calls"]),
             "input_tokens": int(r["input_tokens"] or 0), "output_tokens": int(r["output_tokens"] or 0),
             "cost_usd": round(float(r["cost_usd"] or 0.0), 6)} for r in await database.fetch(stmt)]


async def plan_estimates(database: Database, run_id: str) -> dict[str, float]:
    """The plan's estimate_minutes per task, from the RunStarted entry of the event log."""
    plan = await run_plan(database, run_id)
    return {t.id: t.estimate_minutes or 1.0 for epic in plan.epics for t in epic.tasks}


async def run_detail(database: Database, run_id: str, now: datetime | None = None) -> dict[str, Any] | None:
    run = await get_run(database, run_id)
    if run is None:
        return None
    now = now or datetime.now(timezone.utc)
    epics = await database.fetch(select(db.epics).where(db.epics.c.run_id == run_id).order_by(db.epics.c.position))
    tasks = await database.fetch(select(db.tasks).where(db.tasks.c.run_id == run_id).order_by(db.tasks.c.position))
    batches = await database.fetch(select(db.parallel_batches).where(db.parallel_batches.c.run_id == run_id))
    costs = await database.fetch(select(db.agent_costs).where(db.agent_costs.c.run_id == run_id))
    for t in tasks:
        t["state"] = summary.task_state(t)
    elapsed_end = summary.parse_time(run["ended_at"]) or now
    started = summary.parse_time(run["started_at"])
    totals = {
        "tasks": len(tasks),
        "by_state": summary.state_counts(tasks),
        "cost_usd": round(float(run["cost_usd"] or 0.0), 6),
        "tokens": summary.token_totals(costs),
        "model_calls": len(costs),
        "elapsed_s": round((elapsed_end - started).total_seconds(), 1) if started else None,
        "running": summary.running_agents(tasks, now),
        "eta": summary.estimate_eta(run, tasks, now, await plan_estimates(database, run_id)),
        "forecast": await forecast(database, run_id),  # remaining cost and time from history (docs/costs.md)
    }
    return {"run": run, "epics": epics, "tasks": tasks, "batches": summary.batch_progress(batches, tasks),
            "totals": totals, "learning": await learning(database, run_id), "as_of": now.isoformat(), "ledger_position": await database.position("ledger"),
            "projection_lag_ms": await database.projection_lag_ms()}


async def learning(database: Database, run_id: str) -> dict[str, Any]:
    """How much learning helped this run (shared/expertise/measures.py), from its logged events."""
    log = db.event_log
    rows = await database.fetch(select(log.c.data).where(log.c.run_id == run_id,
                                                         log.c.type.in_(("AgentStarted", "LearningExtracted")))
                                .order_by(log.c.seq))
    return learning_measures(msgspec.convert(r["data"], ev.AnyEvent) for r in rows)


async def task_detail(database: Database, run_id: str, task_id: str) -> dict[str, Any] | None:
    t = db.tasks
    rows = await database.fetch(select(t).where(t.c.run_id == run_id, t.c.id == task_id))
    if not rows:
        return None
    task = rows[0]
    task["state"] = summary.task_state(task)
    a, m, c, w = db.attempts, db.merges, db.agent_costs, db.worktrees
    attempts = await database.fetch(select(a).where(a.c.run_id == run_id, a.c.task_id == task_id).order_by(a.c.attempt))
    merges = await database.fetch(select(m).where(m.c.run_id == run_id, m.c.task_id == task_id).order_by(m.c.occurred_at))
    costs = await database.fetch(select(c).where(c.c.run_id == run_id, c.c.task_id == task_id).order_by(c.c.occurred_at))
    worktrees = await database.fetch(select(w).where(w.c.run_id == run_id, w.c.task_id == task_id))
    for attempt in attempts:  # an attempt still running has cost only in its recorded model calls
        attempt["recorded_cost_usd"] = round(sum(float(x["cost_usd"]) for x in costs if x["attempt"] == attempt["attempt"]), 6)
    return {"task": task, "attempts": attempts, "merges": merges, "costs": costs, "worktrees": worktrees,
            "totals": {"cost_usd": round(sum(float(x["cost_usd"]) for x in costs), 6),
                       "tokens": summary.token_totals(costs)}}


async def run_events(database: Database, run_id: str, after: int = 0, limit: int = 500,
                     tail: int | None = None) -> list[dict[str, Any]]:
    """The run's events after `after` in log order; with `tail`, only the last `tail` of them."""
    e = db.event_log
    stmt = select(e).where(e.c.run_id == run_id, e.c.seq > after)
    if tail is not None:
        return list(reversed(await database.fetch(stmt.order_by(e.c.seq.desc()).limit(tail))))
    return await database.fetch(stmt.order_by(e.c.seq).limit(limit))


async def expertise(database: Database, project_id: str) -> list[dict[str, Any]]:
    """Per domain: the latest version's content and the list of versions."""
    x = db.expertise_files
    # every version's number, the latest one's content (one statement: one snapshot): a document is
    # tens of kB and each task writes a version, so reading every version's content read the whole
    # history for one page
    newest = select(x.c.domain, func.max(x.c.version).label("version")).where(
        x.c.project_id == project_id).group_by(x.c.domain).subquery()
    content = case((x.c.version == newest.c.version, x.c.content), else_=None).label("content")
    rows = await database.fetch(select(x.c.domain, x.c.version, x.c.lines, x.c.updated_at, content)
                                .join(newest, x.c.domain == newest.c.domain)
                                .where(x.c.project_id == project_id).order_by(x.c.domain, x.c.version))
    domains: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = domains.setdefault(row["domain"], {"domain": row["domain"], "versions": []})
        entry["versions"].append({"version": row["version"], "lines": row["lines"], "updated_at": row["updated_at"]})
        entry.update(version=row["version"], lines=row["lines"], content=row["content"], updated_at=row["updated_at"])
    return list(domains.values())


async def status(database: Database, run_id: str | None = None) -> list[dict[str, Any]] | None:
    """`yokeflow status`: one run, or the latest run of each project, with every task.
    None when `run_id` names no run."""
    runs = await database.fetch(select(db.runs).order_by(db.runs.c.started_at))
    if run_id:
        runs = [r for r in runs if r["id"] == run_id]
        if not runs:
            return None
    else:
        latest: dict[str, dict[str, Any]] = {}
        for r in runs:
            latest[r["project_id"]] = r
        runs = list(latest.values())
    projects = {p["id"]: p for p in await database.fetch(select(db.projects))}
    out = []
    for r in runs:
        tasks = await database.fetch(select(db.tasks).where(db.tasks.c.run_id == r["id"]).order_by(db.tasks.c.position))
        out.append({
            "id": r["id"], "project_id": r["project_id"], "project": projects.get(r["project_id"], {}).get("name", ""),
            "plan": r["plan_name"], "status": r["status"], "repo_path": r["repo_path"],
            "target_branch": r["target_branch"], "counts": r["counts"], "stats": r["stats"], "reason": r["reason"],
            "cost_usd": round(float(r["cost_usd"]), 6), "started_at": r["started_at"], "ended_at": r["ended_at"],
            "learning": await learning(database, r["id"]),
            "forecast": await forecast(database, r["id"]),
            "unstarted": await unstarted(database, r["id"], tasks) if r["status"] == "running" else [],
            "tasks": [{
                "id": t["id"], "epic_id": t["epic_id"], "title": t["title"], "status": t["status"],
                "state": summary.task_state(t),
                "merge_status": t["merge_status"] or "unmerged", "merged": t["merge_status"] == "merged",
                "attempt": t["attempt"], "batch": t["batch"], "branch": t["branch"], "commit": t["commit"],
                "merge_commit": t["merge_commit"], "model": t["model"], "cost_usd": round(float(t["cost_usd"]), 6),
                "reason": t["reason"],
            } for t in tasks],
        })
    return out


BUDGET_EVENTS = ("BudgetWarning", "BudgetExhausted", "BudgetSet")


async def budget_events(database: Database, project_id: str, run_id: str = "", limit: int = 20) -> list[dict[str, Any]]:
    """The project's budget warnings, exhaustions and new limits (a run's and the project's own), newest first."""
    e = db.event_log
    stmt = select(e.c.seq, e.c.type, e.c.run_id, e.c.occurred_at, e.c.data).where(
        e.c.project_id == project_id, e.c.type.in_(BUDGET_EVENTS))
    if run_id:  # this run's, and the project-wide ones (they stop every run of the project)
        stmt = stmt.where((e.c.run_id == run_id) | (e.c.data["scope"].as_string() == "project"))
    rows = await database.fetch(stmt.order_by(e.c.seq.desc()).limit(limit))
    return [{"seq": r["seq"], "type": r["type"], "run_id": r["run_id"], "occurred_at": r["occurred_at"],
             "scope": (r["data"] or {}).get("scope", ""), "fraction": (r["data"] or {}).get("fraction", 0.0),
             "spent_usd": (r["data"] or {}).get("spent_exact", ""),
             "limit_usd": (r["data"] or {}).get("limit_exact", ""),
             "set_by": (r["data"] or {}).get("set_by", "")} for r in rows]


async def waiting(database: Database, run_id: str) -> list[dict[str, Any]]:
    """`unstarted` for one running run (empty for any other)."""
    runs = await database.fetch(select(db.runs.c.status).where(db.runs.c.id == run_id))
    if not runs or runs[0]["status"] != "running":
        return []
    tasks = await database.fetch(select(db.tasks.c.id, db.tasks.c.status, db.tasks.c.attempt)
                                 .where(db.tasks.c.run_id == run_id))
    return await unstarted(database, run_id, tasks)


def waiting_line(unstarted: list[dict[str, Any]], executors: int | None) -> str:
    """Why nothing happens, when tasks were handed out and no executor started them (`yokeflow
    status` prints it, the web UI shows it); "" when nothing waits. `executors`: fetches waiting
    on the executor consumer (None: no executor ever bound it)."""
    if not unstarted:
        return ""
    oldest = unstarted[0]
    line = (f"{len(unstarted)} task(s) handed to the executors and not started; {oldest['task_id']} has waited "
            f"{oldest['waiting_s']:.0f}s")
    if not executors:  # None: no executor ever bound; 0: none is pulling now
        return line + (": no executor is running (start one: `python -m services.executor`, or `yokeflow up`)"
                       if executors is None else ": no executor is asking for work (every one stopped, or busy with "
                                   "YOKEFLOW_EXECUTOR_SLOTS full)")
    return line + f" ({executors} executor fetch(es) waiting: it should start soon)"


async def unstarted(database: Database, run_id: str, tasks: list[dict[str, Any]],
                    now: datetime | None = None) -> list[dict[str, Any]]:
    """Tasks handed to the executors (TaskReady) that no executor has taken up yet (no worktree made
    since: an attempt prepared and waiting for its agent slot is in an executor's hands), and for
    how long: how `status` tells a person that nothing is picking work up."""
    ready = {t["id"]: t["attempt"] for t in tasks if t["status"] == "ready"}
    if not ready:
        return []
    rows = await database.fetch(select(db.event_log.c.type, db.event_log.c.occurred_at, db.event_log.c.data)
                                .where(db.event_log.c.run_id == run_id,
                                       db.event_log.c.type.in_(("TaskReady", "WorktreeCreated")))
                                .order_by(db.event_log.c.seq))
    now = now or datetime.now(timezone.utc)
    waiting: dict[str, dict[str, Any]] = {}
    for row in rows:  # in log order: a worktree made after the attempt's TaskReady takes it off the list
        data = row["data"] or {}
        task_id, attempt = str(data.get("task_id", "")), data.get("attempt")
        if row["type"] == "WorktreeCreated":
            waiting.pop(task_id, None)
        elif ready.get(task_id) == attempt and (at := summary.parse_time(row["occurred_at"])) is not None:
            waiting[task_id] = {"task_id": task_id, "attempt": attempt,
                                "waiting_s": round((now - at).total_seconds(), 1)}
    return sorted(waiting.values(), key=lambda u: -u["waiting_s"])
