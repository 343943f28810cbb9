"""Versions of a Session 0 plan, and a person's edits of one.

Every `PlanProduced` on a plan's aggregate is a version (1, 2, ...): Session 0 writes version 1,
each edit a person makes (title, description, dependencies, complexity, removing tasks) appends
the next. `PlanApproved` approves one version; a plan is approved while its latest version is.
Everything here is pure: the bus calls are in shared/plan/session0.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from shared import events as ev
from shared.plan.fields import parse_plan
from shared.plan.doc import PlanDoc
from shared.plan.model import COMPLEXITIES, PlanError
from shared.resolver import resolve


@dataclass(frozen=True)
class Versions:
    versions: list[ev.PlanProduced]  # version n is versions[n - 1]
    approved: int = 0                # the version approved last (0: none)
    approval: ev.PlanApproved | None = None

    @property
    def latest(self) -> int:
        return len(self.versions)

    @property
    def is_approved(self) -> bool:
        return self.latest > 0 and self.approved == self.latest


def fold(history: list[ev.Event]) -> Versions:
    """The plan's versions and which one is approved, from its events in log order."""
    versions: list[ev.PlanProduced] = []
    approved, approval = 0, None
    for e in history:
        if isinstance(e, ev.PlanProduced):
            versions.append(e)
        elif isinstance(e, ev.PlanApproved):  # an approval from before versions approved the latest then
            approved, approval = (e.version or len(versions)), e
    return Versions(versions, approved, approval)


class TaskEdit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a person changes in one task; a field left out stays as it was."""

    title: str | None = None
    description: str | None = None
    depends_on: list[str] | None = None
    complexity: str | None = None


class PlanEdit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    tasks: dict[str, TaskEdit] = {}
    remove: list[str] = []


class EditRefused(ValueError):
    """An edit that cannot make a valid plan: `field` names the request field at fault."""

    def __init__(self, field: str, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.field = field
        self.problems = problems or [{"field": field, "message": message}]


def apply_edit(plan: PlanDoc, edit: PlanEdit) -> PlanDoc:
    """The edited plan, checked like Session 0's output (fields, cycles, unknown dependencies).
    EditRefused names the first field at fault and lists every problem."""
    out = plan.to_dict()
    tasks = {str(t.get("id")): t for e in out.get("epics", []) for t in e.get("tasks", [])}
    for i, tid in enumerate(edit.remove):
        if tid not in tasks:
            raise EditRefused(f"remove[{i}]", f"remove[{i}]: the plan has no task {tid!r}")
    for tid, change in edit.tasks.items():
        if tid not in tasks:
            raise EditRefused(f"tasks.{tid}", f"tasks.{tid}: the plan has no task {tid!r}")
        if tid in edit.remove:
            raise EditRefused(f"tasks.{tid}", f"tasks.{tid}: task {tid} is both edited and removed; do one")
        if change.complexity is not None and change.complexity not in COMPLEXITIES:
            raise EditRefused(f"tasks.{tid}.complexity", f"tasks.{tid}.complexity: {change.complexity!r} is not "
                                                         f"one of {', '.join(COMPLEXITIES)}")
        if change.title is not None and not change.title.strip():
            raise EditRefused(f"tasks.{tid}.title", f"tasks.{tid}.title: a task needs a title")
        task = tasks[tid]
        for name in ("title", "description", "complexity"):
            if getattr(change, name) is not None:
                task[name] = getattr(change, name)
        if change.depends_on is not None:
            task["depends_on"] = list(change.depends_on)
    removed = set(edit.remove)
    for epic in out.get("epics", []):
        epic["tasks"] = [t for t in epic.get("tasks", []) if str(t.get("id")) not in removed]
    still = [(str(t.get("id")), str(d)) for e in out.get("epics", []) for t in e.get("tasks", [])
             for d in t.get("depends_on") or [] if str(d) in removed]
    if still:
        tid, dep = still[0]
        raise EditRefused(f"tasks.{tid}.depends_on", f"tasks.{tid}.depends_on: task {tid} depends on {dep}, which "
                                                     f"this edit removes; take {dep} out of its dependencies too",
                          [{"field": f"tasks.{t}.depends_on", "message": f"task {t} depends on removed task {d}"}
                           for t, d in still])
    _check(out, set(tasks) - removed)
    return msgspec.convert(out, PlanDoc)


def _check(plan: dict[str, Any], task_ids: set[str]) -> None:
    try:
        problems = list(resolve(parse_plan(plan)).errors)
    except PlanError as exc:
        problems = exc.problems
    if not problems:
        return
    listed = [{"field": _field_of(p, task_ids), "code": p.code, "message": p.message, "path": p.path} for p in problems]
    first = listed[0]
    raise EditRefused(first["field"], f"{first['field']}: {first['message']}", listed)


def _field_of(problem: Any, task_ids: set[str]) -> str:
    """The edit's field a plan problem belongs to: a task's (or epic's) dependencies for graph problems."""
    if problem.code in ("cycle", "missing_dependency", "self_dependency") and problem.ids:
        owner = next((i for i in problem.ids if i in task_ids), problem.ids[0])
        return f"tasks.{owner}.depends_on" if owner in task_ids else f"epics.{owner}.depends_on"
    return problem.path or "plan"


def plan_state(plan_id: str, history: list[ev.Event]) -> dict[str, Any]:
    """A plan's state from its events: requested, produced, rejected or approved, with its versions."""
    v = fold(history)
    produced = v.versions[-1] if v.versions else None
    rejected = next((e for e in reversed(history) if isinstance(e, ev.PlanRejected)), None)
    status = ("approved" if v.is_approved else "produced" if produced else "rejected" if rejected else "requested")
    return {"plan_id": plan_id, "status": status, "plan": produced.plan.to_dict() if produced else None,
            "version": v.latest, "approved_version": v.approved,
            "versions": [{"version": i + 1, "source": p.source, "edited_by": p.edited_by, "occurred_at": p.occurred_at}
                         for i, p in enumerate(v.versions)],
            "source": produced.source if produced else "", "path": produced.path if produced else "",
            "errors": msgspec.to_builtins(rejected.errors) if rejected and not produced else [],
            "approved_by": v.approval.approved_by if v.approval else "",
            "approved_at": v.approval.occurred_at if v.approval else None}
