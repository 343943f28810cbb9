"""Cost reports from the ledger's rows (`yokeflow costs`, GET /api/projects/{id}/costs).

One row per CostRecorded is in `agent_costs` (NUMERIC, exact); a report sums them in PostgreSQL
per task, epic, model, domain or run. Amounts leave as decimal strings, so the rows add up to the
total to the last digit, and the total equals the sum of CostRecorded.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select

from shared import db
from shared.llm.pricing import usd

GROUPINGS = ("task", "epic", "model", "domain", "run")
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")


class ReportError(ValueError):
    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def _keys(by: str, c, t) -> list:
    return {"task": [c.c.run_id, c.c.task_id], "epic": [c.c.run_id, t.c.epic_id], "model": [c.c.model],
            "domain": [t.c.domain], "run": [c.c.run_id]}[by]


async def cost_report(database: db.Database, *, project_id: str | None = None, run_id: str | None = None,
                      by: str = "task") -> dict[str, Any]:
    """{"project_id", "run_id", "by", "total_usd", "calls", tokens by kind, "rows": [{key, cost_usd, ...}]}."""
    if by not in GROUPINGS:
        raise ReportError(f"by: {by!r} is not a grouping; use one of {', '.join(GROUPINGS)}", "by")
    c, t = db.agent_costs, db.tasks
    keys = _keys(by, c, t)
    sums = [func.coalesce(func.sum(c.c.cost_usd), 0).label("cost_usd"), func.count().label("calls"),
            *[func.coalesce(func.sum(getattr(c.c, k)), 0).label(k) for k in TOKEN_KINDS]]
    stmt = (select(*[k.label(f"k{i}") for i, k in enumerate(keys)], *sums)
            .select_from(c.outerjoin(t, and_(t.c.run_id == c.c.run_id, t.c.id == c.c.task_id)))
            .group_by(*keys).order_by(*keys))
    if project_id:
        stmt = stmt.where(c.c.project_id == project_id)
    if run_id:
        stmt = stmt.where(c.c.run_id == run_id)
    rows = []
    for r in await database.fetch(stmt):
        parts = [r[f"k{i}"] or "" for i in range(len(keys))]
        row: dict[str, Any] = {"key": parts[-1] if by in ("task", "epic") and run_id else "/".join(parts)}
        if by in ("task", "epic"):
            row["run_id"], row[f"{by}_id"] = parts
        else:
            row[{"run": "run_id"}.get(by, by)] = parts[0]
        row["cost_usd"] = usd(Decimal(r["cost_usd"]))
        row["calls"] = int(r["calls"])
        row.update({k: int(r[k]) for k in TOKEN_KINDS})
        rows.append(row)
    total = sum((Decimal(x["cost_usd"]) for x in rows), Decimal(0))
    return {"project_id": project_id, "run_id": run_id, "by": by, "total_usd": usd(total),
            "calls": sum(x["calls"] for x in rows), "tokens": {k: sum(x[k] for x in rows) for k in TOKEN_KINDS},
            "rows": rows}
