"""The plan file (docs/plan-format.md): epics and tasks with declared dependencies.

Loading checks every field and reports every problem at once, each with the path to the
field; graph checks (cycles, missing references, duplicates) are services/planner/resolver.py.
Ids may be int or string in the file and are text inside: 11 and "11" are the same id.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import weakref
from pathlib import Path
from typing import Any, Mapping

import msgspec
import yaml

DOMAINS = ("database", "api", "frontend", "testing", "security", "deployment", "general")
COMPLEXITIES = ("low", "medium", "high")
DEPENDENCY_TYPES = ("hard", "soft")
PROBLEM_CODES = ("cycle", "missing_dependency", "duplicate_id", "self_dependency", "invalid_field")
PLAN_FIELDS = ("name", "epics")
EPIC_FIELDS = ("id", "name", "description", "priority", "depends_on", "tasks")
TASK_FIELDS = ("id", "title", "description", "priority", "depends_on", "dependency_type",
               "domain", "complexity", "estimate_minutes", "tests")
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


def _invalid(message: str, path: str = "") -> PlanProblem:
    return PlanProblem(code="invalid_field", ids=[], message=message, path=path)


# ---------------------------------------------------------------- reading files
class _StrictYamlLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML that records duplicate keys, which plain YAML silently overwrites."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    mark = key_node.start_mark
                    self.duplicate_keys.append(
                        f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}; "
                        "each field may appear once")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def decode_plan_text(raw: bytes, source: str = "plan", fmt: str | None = None) -> Any:
    """Bytes of a plan file to plain data (JSON when fmt or the name says so, else YAML)."""
    if not raw.strip():
        raise PlanError([_invalid(f"{source} is empty; a plan needs a name and a list of epics "
                                  "(see docs/plan-format.md)")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanError([_invalid(f"{source} is not UTF-8 text (bad byte at offset {exc.start}); "
                                  "save the plan as UTF-8 YAML or JSON")]) from None
    use_json = (fmt or Path(source).suffix.lstrip(".")).lower() == "json"
    try:
        return _decode_json(text, source) if use_json else _decode_yaml(text, source)
    except RecursionError:
        raise PlanError([_invalid(f"{source} is nested too deeply to be a plan")]) from None


def _decode_json(text: str, source: str) -> Any:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in items]
        duplicates.extend(f"duplicate key {k!r} in a JSON object; each field may appear once"
                          for k in sorted(set(keys)) if keys.count(k) > 1)
        return dict(items)

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise PlanError([_invalid(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                  f"column {exc.colno}")]) from None
    if duplicates:
        raise PlanError([_invalid(f"{source}: {d}") for d in duplicates])
    return data


def _decode_yaml(text: str, source: str) -> Any:
    loader = _StrictYamlLoader(text)
    loader.duplicate_keys = []
    try:
        _check_nesting(text, source)
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlanError([_invalid(f"{source} is not valid YAML: {problem}{where}")]) from None
    finally:
        loader.dispose()
    if loader.duplicate_keys:
        raise PlanError([_invalid(f"{source}: {d}") for d in loader.duplicate_keys])
    return data


def _check_nesting(text: str, source: str) -> None:
    """libyaml's composer recurses in C and crashes the process on very deep nesting, so the
    (iterative) parser's events are counted first."""
    depth = 0
    for event in yaml.parse(text, Loader=_StrictYamlLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_NESTING:
                mark = event.start_mark
                raise PlanError([_invalid(f"{source} is nested more than {MAX_NESTING} levels deep at "
                                          f"line {mark.line + 1}, column {mark.column + 1}; a plan is "
                                          "about 6 levels deep")])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def load_plan(path: str | Path) -> Plan:
    """Read, decode and check a plan file; PlanError lists every problem found."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PlanFileUnreadable([_invalid(f"plan file {path} does not exist; give the path of a "
                                           "YAML or JSON plan")]) from None
    except IsADirectoryError:
        raise PlanFileUnreadable([_invalid(f"plan file {path} is a folder; give the path of a "
                                           "YAML or JSON plan file")]) from None
    except OSError as exc:
        raise PlanFileUnreadable([_invalid(f"cannot read plan file {path}: {exc.strerror or exc}")]) from None
    return parse_plan(decode_plan_text(raw, str(path)))


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write a plan as JSON (a .json name) or YAML (anything else)."""
    path = Path(path)
    data = plan_to_dict(plan)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# ---------------------------------------------------------------- checking fields
class _FieldChecker:
    """Collects every bad field with its path instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[PlanProblem] = []
        self.more = 0

    def bad(self, path: str, message: str) -> None:
        if len(self.problems) < MAX_FIELD_PROBLEMS:
            self.problems.append(_invalid(message, path))
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
            check.problems.append(_invalid(f"... and {check.more} more invalid fields not listed"))
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
        position=position)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan in file format (ids as strings); parse_plan(plan_to_dict(p)) == p."""
    def task_dict(t: PlanTask) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": t.id, "title": t.title, "description": t.description, "priority": t.priority,
            "depends_on": list(t.depends_on), "dependency_type": t.dependency_type, "domain": t.domain}
        if t.complexity is not None:
            out["complexity"] = t.complexity
        out.update(estimate_minutes=t.estimate_minutes, tests=list(t.tests))
        return out

    def epic_dict(e: PlanEpic) -> dict[str, Any]:
        out: dict[str, Any] = {"id": e.id, "name": e.name}
        if e.description:
            out["description"] = e.description
        out.update(priority=e.priority, depends_on=list(e.depends_on),
                   tasks=[task_dict(t) for t in e.tasks])
        return out

    return {"name": plan.name, "epics": [epic_dict(e) for e in plan.epics]}


# ---------------------------------------------------------------- complexity
_HARD_WORDS = re.compile(
    r"\b(migrat\w*|auth\w*|oauth|security|secur\w*|encrypt\w*|crypt\w*|concurren\w*|parallel|"
    r"distributed|transaction\w*|payment\w*|real-?time|websocket\w*|architect\w*|refactor\w*|"
    r"performance|optimi[sz]\w*|cach\w*|sync\w*|schema|integrat\w*|scal\w*)\b", re.I)
_EASY_WORDS = re.compile(
    r"\b(readme|docs?|documentation|typo|rename|comment\w*|copy|text|label|style|lint\w*|"
    r"format\w*|config\w*|constant\w*|logging|placeholder|stub)\b", re.I)


def estimate_complexity(task: PlanTask | Mapping[str, Any]) -> str:
    """low | medium | high from words and size, for tasks whose plan gives no complexity.

    Score: +2 per distinct hard word (migration, auth, concurrency, ...) up to +4, -1 per
    distinct easy word (readme, typo, rename, ...) up to -2, +1 for a description over 80
    words and +1 more over 200, +1 for 4 or more tests, +1 for an estimate of 30 minutes or
    more and +1 more from 120. Score >= 3 is high, >= 1 medium, else low.
    """
    get = task.get if isinstance(task, Mapping) else (lambda k, d=None: getattr(task, k, d))
    text = f"{get('title', '') or ''} {get('description', '') or ''}"
    hard = {m.lower() for m in _HARD_WORDS.findall(text)}
    easy = {m.lower() for m in _EASY_WORDS.findall(text)}
    score = min(4, 2 * len(hard)) - min(2, len(easy))
    words = len(str(get("description", "") or "").split())
    score += (words > 80) + (words > 200)
    score += len(get("tests", ()) or ()) >= 4
    minutes = get("estimate_minutes", 1.0)
    minutes = minutes if isinstance(minutes, (int, float)) else 1.0
    score += (minutes >= 30) + (minutes >= 120)
    return "high" if score >= 3 else "medium" if score >= 1 else "low"


def task_complexity(task: PlanTask) -> str:
    """The task's declared complexity, or the estimate when the plan gives none."""
    return task.complexity or estimate_complexity(task)
