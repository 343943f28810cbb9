"""The plan as events carry it (`RunStarted.plan`, `PlanProduced.plan`): the plan file's shape
(docs/plan-format.md, `plan_to_dict`) as Structs, ids as strings. A reader turns it into the
`Plan` it works with by `to_plan()`, checked as a plan file is."""

from __future__ import annotations

from typing import Any, Literal, Mapping

import msgspec

from shared.plan.fields import parse_plan
from shared.plan.model import Complexity, Domain, Plan, plan_to_dict


# Every field has a default, so an event whose plan misses one still decodes: to_plan() then
# refuses it by name, as a plan file missing it is (the scheduler fails such a run).
class TaskDoc(msgspec.Struct, frozen=True, kw_only=True):
    id: str = ""
    title: str = ""
    description: str = ""
    priority: int = 3
    depends_on: list[str] = []
    dependency_type: Literal["hard", "soft"] = "hard"
    domain: Domain = "general"
    complexity: Complexity | None = None  # None: estimated from the task (shared/plan/complexity.py)
    estimate_minutes: float = 1.0
    tests: list[str] = []
    files: list[str] = []


class EpicDoc(msgspec.Struct, frozen=True, kw_only=True):
    id: str = ""
    name: str = ""
    description: str = ""
    priority: int = 3
    depends_on: list[str] = []
    tasks: list[TaskDoc] = []


class PlanDoc(msgspec.Struct, frozen=True, kw_only=True):
    name: str = ""
    epics: list[EpicDoc] = []

    @classmethod
    def of(cls, plan: Plan | Mapping[str, Any]) -> "PlanDoc":
        """A checked plan (or plan-file data, checked here: PlanError names every bad field) as events carry it."""
        parsed = plan if isinstance(plan, Plan) else parse_plan(plan)
        return msgspec.convert(plan_to_dict(parsed), cls)

    def to_plan(self) -> Plan:
        """The Plan; PlanError when it is not a valid plan file (e.g. no epic)."""
        return parse_plan(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Plan-file data (JSON-ready), e.g. for the API."""
        return msgspec.to_builtins(self)

    def task_count(self) -> int:
        return sum(len(epic.tasks) for epic in self.epics)
