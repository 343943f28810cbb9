"""Reading and writing plan files: YAML, or JSON by name; syntax errors with line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from shared.plan.fields import parse_plan
from shared.plan.model import MAX_NESTING, Plan, PlanError, PlanFileUnreadable, invalid, plan_to_dict


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
        raise PlanError([invalid(f"{source} is empty; a plan needs a name and a list of epics "
                                  "(see docs/plan-format.md)")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanError([invalid(f"{source} is not UTF-8 text (bad byte at offset {exc.start}); "
                                  "save the plan as UTF-8 YAML or JSON")]) from None
    use_json = (fmt or Path(source).suffix.lstrip(".")).lower() == "json"
    try:
        return _decode_json(text, source) if use_json else _decode_yaml(text, source)
    except RecursionError:
        raise PlanError([invalid(f"{source} is nested too deeply to be a plan")]) from None


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
        raise PlanError([invalid(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                  f"column {exc.colno}")]) from None
    if duplicates:
        raise PlanError([invalid(f"{source}: {d}") for d in duplicates])
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
        raise PlanError([invalid(f"{source} is not valid YAML: {problem}{where}")]) from None
    finally:
        loader.dispose()
    if loader.duplicate_keys:
        raise PlanError([invalid(f"{source}: {d}") for d in loader.duplicate_keys])
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
                raise PlanError([invalid(f"{source} is nested more than {MAX_NESTING} levels deep at "
                                          f"line {mark.line + 1}, column {mark.column + 1}; a plan is "
                                          "about 6 levels deep")])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


MAX_PLAN_FILE_BYTES = 64 << 20  # far past what one run can take (a plan travels in one NATS message)


def load_plan(path: str | Path) -> Plan:
    """Read, decode and check a plan file; PlanError lists every problem found. At most
    MAX_PLAN_FILE_BYTES are read, whatever the file says its size is (a pipe, /dev/zero)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PLAN_FILE_BYTES + 1)
        if len(raw) > MAX_PLAN_FILE_BYTES:
            raise PlanFileUnreadable([invalid(f"plan file {path} is over {MAX_PLAN_FILE_BYTES >> 20} MB; a plan "
                                               "lists epics and tasks, not their code or data")])
    except FileNotFoundError:
        raise PlanFileUnreadable([invalid(f"plan file {path} does not exist; give the path of a "
                                           "YAML or JSON plan")]) from None
    except IsADirectoryError:
        raise PlanFileUnreadable([invalid(f"plan file {path} is a folder; give the path of a "
                                           "YAML or JSON plan file")]) from None
    except OSError as exc:
        raise PlanFileUnreadable([invalid(f"cannot read plan file {path}: {exc.strerror or exc}")]) from None
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
