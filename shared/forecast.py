"""What the rest of a run should cost and take: from history (the project's finished attempts per
(domain, complexity): mean cost and duration, success rate) and the remaining graph (its critical
path and the run's concurrency). Shown by `yokeflow status` and the gateway's run detail.

`forecast_from` is pure; `forecast` reads the projections for it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, select

from shared import db
from shared.llm.pricing import usd

ENDED = {"done", "failed", "blocked", "cancelled"}
COUNTED = {"success", "failure"}


def _means(rows: Iterable[Mapping[str, Any]]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        for key in ((r["domain"], r["complexity"]), "*"):
            s = out.setdefault(key, {"n": 0, "ok": 0, "cost": Decimal(0), "seconds": 0.0})
            s["n"] += 1
            s["ok"] += r["outcome"] == "success"
            s["cost"] += Decimal(r["cost_usd"] or 0)
            s["seconds"] += float(r["duration_s"] or 0)
    return out


def forecast_from(tasks: list[Mapping[str, Any]], history: list[Mapping[str, Any]], *, concurrency: int,
                  max_attempts: int) -> dict[str, Any]:
    """tasks: the run's rows (id, status, domain, complexity, depends_on); history: finished
    attempts of the project (domain, complexity, outcome, cost_usd, duration_s)."""
    means = _means(r for r in history if r["outcome"] in COUNTED)
    remaining = [t for t in tasks if t["status"] not in ENDED]
    if not remaining:
        return {"remaining_tasks": 0, "expected_cost_usd": "0", "expected_seconds": 0.0, "basis": "done"}
    if "*" not in means:
        return {"remaining_tasks": len(remaining), "expected_cost_usd": None, "expected_seconds": None,
                "basis": "no finished attempt yet"}
    cost, seconds, basis = Decimal(0), {}, "history"
    for t in remaining:
        s = means.get((t["domain"], t["complexity"] or "medium"))
        if s is None:
            s, basis = means["*"], "history (project means where a domain/complexity has none)"
        tries = min(float(max_attempts), 1 / max(s["ok"] / s["n"], 1 / max_attempts))  # expected tries
        cost += s["cost"] / s["n"] * Decimal(str(round(tries, 4)))
        seconds[t["id"]] = s["seconds"] / s["n"] * tries
    ids = set(seconds)
    longest: dict[str, float] = {}

    def path(tid: str) -> float:  # the remaining graph's longest chain ending at tid
        if tid not in longest:
            task = next(t for t in remaining if t["id"] == tid)
            deps = [d for d in (task["depends_on"] or []) if d in ids]
            longest[tid] = seconds[tid] + max((path(d) for d in deps), default=0.0)
        return longest[tid]

    critical = max(path(t) for t in ids)
    total = sum(seconds.values())
    return {"remaining_tasks": len(remaining), "expected_cost_usd": usd(cost.quantize(Decimal("0.000001"))),
            "expected_seconds": round(max(critical, total / max(concurrency, 1)), 1),
            "critical_path_seconds": round(critical, 1), "basis": basis}


async def forecast(database: db.Database, run_id: str) -> dict[str, Any] | None:
    runs = await database.fetch(select(db.runs).where(db.runs.c.id == run_id))
    if not runs:
        return None
    run = runs[0]
    t, a = db.tasks, db.attempts
    tasks = await database.fetch(select(t.c.id, t.c.status, t.c.domain, t.c.complexity, t.c.depends_on)
                                 .where(t.c.run_id == run_id))
    history = await database.fetch(
        select(t.c.domain, t.c.complexity, a.c.outcome, a.c.cost_usd, a.c.duration_s)
        .select_from(a.join(t, and_(t.c.run_id == a.c.run_id, t.c.id == a.c.task_id)))
        .where(t.c.project_id == run["project_id"], a.c.outcome.in_(COUNTED)))
    parallel = (run["settings"] or {}).get("parallel") or {}
    concurrency = 1 if parallel.get("enabled") is False else int(parallel.get("max_concurrency", 3))
    return forecast_from(tasks, history, concurrency=concurrency, max_attempts=int(parallel.get("max_attempts", 2)))
