"""The plan's values: epics and tasks as frozen structs, and the problems found in a plan."""

from __future__ import annotations

import weakref
from typing import Any, Literal, get_args

import msgspec

Domain = Literal["database", "api", "frontend", "testing", "security", "deployment", "general"]
Complexity = Literal["low", "medium", "high"]
DOMAINS: tuple[str, ...] = get_args(Domain)
COMPLEXITIES: tuple[str, ...] = get_args(Complexity)
DEPENDENCY_TYPES = ("hard", "soft")
PROBLEM_CODES = ("cycle", "missing_dependency", "duplicate_id", "self_dependency", "invalid_field", "too_large")
PLAN_FIELDS = ("name", "epics")
EPIC_FIELDS = ("id", "name", "description", "priority", "depends_on", "tasks")
TASK_FIELDS = ("id", "title", "description", "priority", "depends_on", "dependency_type",
               "domain", "complexity", "estimate_minutes", "tests", "files")
MAX_NESTING = 50  # a plan is about 6 levels deep; far deeper input is junk
MAX_FIELD_PROBLEMS = 1000  # junk input can hold millions of bad fields; the rest are counted


class PlanTask(msgspec.Struct, frozen=True):
    id: str
    epic_id: str
    title: str
    description: str = ""
    priority: int = 3
    depends_on: tuple[str, ...] = ()
    dependency_type: str = "hard"
    domain: str = "general"
    complexity: str | None = None
    estimate_minutes: float = 1.0
    tests: tuple[str, ...] = ()
    position: int = 0  # order of the task in the whole file, from 0
    files: tuple[str, ...] = ()  # paths or globs the task will most likely edit (parallel.strategy: smart)


class PlanEpic(msgspec.Struct, frozen=True):
    id: str
    name: str
    priority: int = 3
    depends_on: tuple[str, ...] = ()
    tasks: tuple[PlanTask, ...] = ()
    position: int = 0  # order of the epic in the file, from 0
    description: str = ""


class Plan(msgspec.Struct, frozen=True, weakref=True):
    name: str
    epics: tuple[PlanEpic, ...]

    def tasks(self) -> list[PlanTask]:
        """Every task in file order."""
        return [task for epic in self.epics for task in epic.tasks]

    def task(self, task_id: str) -> PlanTask:
        found = _lookup(self)[0].get(str(task_id))
        if found is None:
            raise KeyError(f"plan {self.name!r} has no task with id {task_id!r}")
        return found

    def epic(self, epic_id: str) -> PlanEpic:
        found = _lookup(self)[1].get(str(epic_id))
        if found is None:
            raise KeyError(f"plan {self.name!r} has no epic with id {epic_id!r}")
        return found


_LOOKUPS: dict[int, tuple[dict[str, PlanTask], dict[str, PlanEpic]]] = {}


def _lookup(plan: Plan) -> tuple[dict[str, PlanTask], dict[str, PlanEpic]]:
    """Id indexes built once per plan (plans are immutable); with duplicate ids the first wins."""
    key = id(plan)
    found = _LOOKUPS.get(key)
    if found is None:
        tasks: dict[str, PlanTask] = {}
        epics: dict[str, PlanEpic] = {}
        for epic in plan.epics:
            epics.setdefault(epic.id, epic)
            for task in epic.tasks:
                tasks.setdefault(task.id, task)
        found = _LOOKUPS[key] = (tasks, epics)
        weakref.finalize(plan, _LOOKUPS.pop, key, None)
    return found


class PlanProblem(msgspec.Struct, frozen=True):
    code: str  # one of PROBLEM_CODES for errors; warnings have their own codes
    ids: list[str]
    message: str
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "ids": list(self.ids), "message": self.message, "path": self.path}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PlanError(Exception):
    """A plan that cannot be used; str() lists every problem, one per line."""

    def __init__(self, problems: list[PlanProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanFileUnreadable(PlanError):
    """The plan file could not be read at all (missing, a folder, no permission)."""


def invalid(message: str, path: str = "") -> PlanProblem:
    return PlanProblem(code="invalid_field", ids=[], message=message, path=path)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan in file format (ids as strings); parse_plan(plan_to_dict(p)) == p."""
    def task_dict(t: PlanTask) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": t.id, "title": t.title, "description": t.description, "priority": t.priority,
            "depends_on": list(t.depends_on), "dependency_type": t.dependency_type, "domain": t.domain}
        if t.complexity is not None:
            out["complexity"] = t.complexity
        out.update(estimate_minutes=t.estimate_minutes, tests=list(t.tests))
        if t.files:
            out["files"] = list(t.files)
        return out

    def epic_dict(e: PlanEpic) -> dict[str, Any]:
        out: dict[str, Any] = {"id": e.id, "name": e.name}
        if e.description:
            out["description"] = e.description
        out.update(priority=e.priority, depends_on=list(e.depends_on),
                   tasks=[task_dict(t) for t in e.tasks])
        return out

    return {"name": plan.name, "epics": [epic_dict(e) for e in plan.epics]}
