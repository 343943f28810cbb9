"""Field-by-field checking of decoded plan data: every bad field reported with its path."""

from __future__ import annotations

import difflib
import math
from typing import Any, Mapping

from shared.plan.model import (
    COMPLEXITIES, DEPENDENCY_TYPES, DOMAINS, EPIC_FIELDS, MAX_FIELD_PROBLEMS, PLAN_FIELDS, TASK_FIELDS,
    Plan, PlanEpic, PlanError, PlanProblem, PlanTask, invalid,
)


class _FieldChecker:
    """Collects every bad field with its path instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[PlanProblem] = []
        self.more = 0

    def bad(self, path: str, message: str) -> None:
        if len(self.problems) < MAX_FIELD_PROBLEMS:
            self.problems.append(invalid(message, path))
        else:
            self.more += 1

    def mapping(self, value: Any, path: str, what: str, allowed: tuple[str, ...],
                required: tuple[str, ...]) -> Mapping | None:
        if not isinstance(value, Mapping):
            self.bad(path, f"{what} must be a mapping of fields, got {_kind(value)}")
            return None
        for key in value:
            if key not in allowed and len(self.problems) >= MAX_FIELD_PROBLEMS:
                self.more += 1  # counted without the costly did-you-mean lookup
            elif key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.bad(_join(path, str(key)), f"unknown field {key!r} in {what}{did_you_mean}; "
                                                f"allowed fields: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.bad(_join(path, key), f"{what} is missing the required field {key!r}")
        return value

    def ident(self, value: Any, path: str) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            self.bad(path, f"an id must be an integer or a string, got {_kind(value)}")
            return None
        if isinstance(value, float):
            if not value.is_integer():
                self.bad(path, f"an id must be an integer or a string, got the number {value!r}")
                return None
            return str(int(value))
        if isinstance(value, str) and not value.strip():
            self.bad(path, "an id must not be empty")
            return None
        return str(value)

    def ids(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.bad(path, f"depends_on must be a list of ids, got {_kind(value)}")
            return ()
        found = (self.ident(item, f"{path}[{i}]") for i, item in enumerate(value))
        return tuple(item for item in found if item is not None)

    def text(self, value: Any, path: str, required: bool) -> str:
        if not isinstance(value, str):
            self.bad(path, f"must be a string, got {_kind(value)}")
            return ""
        if required and not value.strip():
            self.bad(path, "must not be empty")
        return value

    def priority(self, value: Any, path: str) -> int:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or value < 1:
            self.bad(path, f"priority must be a whole number >= 1 (1 = most urgent), got {value!r}")
            return 3
        return int(value)

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str:
        if value not in choices or not isinstance(value, str):
            self.bad(path, f"must be one of {', '.join(choices)}; got {value!r}")
            return choices[0]
        return value

    def minutes(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0:
            self.bad(path, f"estimate_minutes must be a number >= 0, got {value!r}")
            return 1.0
        return float(value)

    def commands(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.bad(path, f"tests must be a list of commands (strings), got {_kind(value)}")
            return ()
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.bad(f"{path}[{i}]", f"a test must be a non-empty command string, got {item!r}")
        return tuple(item for item in value if isinstance(item, str))

    def paths(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.bad(path, f"files must be a list of paths or globs relative to the repository root, "
                           f"got {_kind(value)}")
            return ()
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.bad(f"{path}[{i}]", f"a file must be a non-empty path or glob, got {item!r}")
            elif item.strip().startswith("/") or ".." in item.strip().replace("\\", "/").split("/"):
                self.bad(f"{path}[{i}]", f"a file must be relative to the repository root and stay inside it "
                                         f"(no leading / and no ..), got {item!r}")
        return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping"}
    shown = repr(value) if isinstance(value, (bool, int, float)) else ""
    return names.get(type(value), type(value).__name__) + (f" ({shown})" if shown else "")


def parse_plan(data: Any) -> Plan:
    """Plain decoded data to a Plan; PlanError with an invalid_field problem for every bad field."""
    check = _FieldChecker()
    top = check.mapping(data, "", "the plan", PLAN_FIELDS, PLAN_FIELDS)
    epics: list[PlanEpic] = []
    if top is not None:
        name = check.text(top["name"], "name", True) if "name" in top else ""
        raw_epics = top.get("epics")
        if "epics" in top and not isinstance(raw_epics, list):
            check.bad("epics", f"epics must be a list, got {_kind(raw_epics)}")
        elif isinstance(raw_epics, list) and not raw_epics:
            check.bad("epics", "a plan needs at least one epic")
        elif isinstance(raw_epics, list):
            position = 0
            for e, raw_epic in enumerate(raw_epics):
                epic = _parse_epic(check, raw_epic, e, position)
                if epic is not None:
                    epics.append(epic)
                raw_tasks = raw_epic.get("tasks") if isinstance(raw_epic, Mapping) else None
                position += len(raw_tasks) if isinstance(raw_tasks, list) else 0
    if check.problems:
        if check.more:
            check.problems.append(invalid(f"... and {check.more} more invalid fields not listed"))
        raise PlanError(check.problems)
    return Plan(name=name, epics=tuple(epics))


def _parse_epic(check: _FieldChecker, raw: Any, e: int, position: int) -> PlanEpic | None:
    path = f"epics[{e}]"
    fields = check.mapping(raw, path, "an epic", EPIC_FIELDS, ("id", "name"))
    if fields is None:
        return None
    epic_id = check.ident(fields["id"], f"{path}.id") if "id" in fields else None
    raw_tasks = fields.get("tasks", [])
    tasks: list[PlanTask] = []
    if raw_tasks is not None and not isinstance(raw_tasks, list):
        check.bad(f"{path}.tasks", f"tasks must be a list, got {_kind(raw_tasks)}")
    for t, raw_task in enumerate(raw_tasks if isinstance(raw_tasks, list) else []):
        task = _parse_task(check, raw_task, f"{path}.tasks[{t}]", epic_id or "", position + t)
        if task is not None:
            tasks.append(task)
    return PlanEpic(
        id=epic_id or "",
        name=check.text(fields["name"], f"{path}.name", True) if "name" in fields else "",
        description=check.text(fields.get("description", ""), f"{path}.description", False),
        priority=check.priority(fields.get("priority", 3), f"{path}.priority"),
        depends_on=check.ids(fields.get("depends_on"), f"{path}.depends_on"),
        tasks=tuple(tasks), position=e)


def _parse_task(check: _FieldChecker, raw: Any, path: str, epic_id: str, position: int) -> PlanTask | None:
    fields = check.mapping(raw, path, "a task", TASK_FIELDS, ("id", "title"))
    if fields is None:
        return None
    complexity = fields.get("complexity")
    return PlanTask(
        id=(check.ident(fields["id"], f"{path}.id") or "") if "id" in fields else "",
        epic_id=epic_id,
        title=check.text(fields["title"], f"{path}.title", True) if "title" in fields else "",
        description=check.text(fields.get("description", ""), f"{path}.description", False),
        priority=check.priority(fields.get("priority", 3), f"{path}.priority"),
        depends_on=check.ids(fields.get("depends_on"), f"{path}.depends_on"),
        dependency_type=check.choice(fields.get("dependency_type", "hard"), f"{path}.dependency_type",
                                     DEPENDENCY_TYPES),
        domain=check.choice(fields.get("domain", "general"), f"{path}.domain", DOMAINS),
        complexity=None if complexity is None else check.choice(complexity, f"{path}.complexity",
                                                                COMPLEXITIES),
        estimate_minutes=check.minutes(fields.get("estimate_minutes", 1), f"{path}.estimate_minutes"),
        tests=check.commands(fields.get("tests", []), f"{path}.tests"),
        files=check.paths(fields.get("files"), f"{path}.files"),
        position=position)
