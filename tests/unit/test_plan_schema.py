"""shared/plan/plan.schema.json and the loader agree: the documented example passes both, and bad
plans fail both."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from shared.plan import PlanError, parse_plan

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA = json.loads((DOCS.parent / "shared" / "plan" / "plan.schema.json").read_text())


def documented_example() -> dict:
    """The first YAML block of docs/plan-format.md: the example people copy."""
    text = (DOCS / "plan-format.md").read_text()
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def test_the_schema_is_itself_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_documented_example_passes_the_schema_and_the_loader():
    example = documented_example()
    jsonschema.validate(example, SCHEMA)
    plan = parse_plan(example)
    assert len(plan.tasks()) >= 3


def broken(change) -> dict:
    data = copy.deepcopy(documented_example())
    change(data)
    return data


INVALID = {
    "unknown top-level field": lambda d: d.update(owner="me"),
    "no epics": lambda d: d.update(epics=[]),
    "epic without a name": lambda d: d["epics"][0].pop("name"),
    "unknown task field": lambda d: d["epics"][0]["tasks"][0].update(colour="red"),
    "bad dependency type": lambda d: d["epics"][0]["tasks"][0].update(dependency_type="firm"),
    "bad domain": lambda d: d["epics"][0]["tasks"][0].update(domain="backend"),
    "bad complexity": lambda d: d["epics"][0]["tasks"][0].update(complexity="huge"),
    "priority zero": lambda d: d["epics"][0].update(priority=0),
    "fractional priority": lambda d: d["epics"][0]["tasks"][0].update(priority=1.5),
    "negative estimate": lambda d: d["epics"][0]["tasks"][0].update(estimate_minutes=-2),
    "boolean id": lambda d: d["epics"][0]["tasks"][0].update(id=True),
    "blank id": lambda d: d["epics"][0]["tasks"][0].update(id="  "),
    "fractional id in depends_on": lambda d: d["epics"][0]["tasks"][0].update(depends_on=[1.5]),
    "empty title": lambda d: d["epics"][0]["tasks"][0].update(title=""),
    "tests not a list": lambda d: d["epics"][0]["tasks"][0].update(tests="pytest"),
    "empty test command": lambda d: d["epics"][0]["tasks"][0].update(tests=[""]),
    "task not a mapping": lambda d: d["epics"][0]["tasks"].append("task"),
    "files not a list": lambda d: d["epics"][0]["tasks"][0].update(files="src/"),
    "absolute file": lambda d: d["epics"][0]["tasks"][0].update(files=["/etc/hosts"]),
    "file outside the repository": lambda d: d["epics"][0]["tasks"][0].update(files=["src/../../x"]),
    "empty file": lambda d: d["epics"][0]["tasks"][0].update(files=[" "]),
}


@pytest.mark.parametrize("name", INVALID)
def test_schema_and_loader_refuse_the_same_bad_plans(name):
    data = broken(INVALID[name])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
    with pytest.raises(PlanError):
        parse_plan(data)


VALID_VARIANTS = {
    "string and int ids": lambda d: d["epics"][0]["tasks"][0].update(id="a-1"),
    "null depends_on": lambda d: d["epics"][0]["tasks"][0].update(depends_on=None),
    "null complexity": lambda d: d["epics"][0]["tasks"][0].update(complexity=None),
    "zero estimate": lambda d: d["epics"][0]["tasks"][0].update(estimate_minutes=0),
    "epic without tasks": lambda d: d["epics"].append({"id": "empty", "name": "Later"}),
    "whole-number float priority": lambda d: d["epics"][0].update(priority=2.0),
    "files and globs": lambda d: d["epics"][0]["tasks"][0].update(files=["src/api/**", "docs/", "README.md"]),
    "null files": lambda d: d["epics"][0]["tasks"][0].update(files=None),
}


@pytest.mark.parametrize("name", VALID_VARIANTS)
def test_schema_and_loader_accept_the_same_variants(name):
    data = broken(VALID_VARIANTS[name])
    jsonschema.validate(data, SCHEMA)
    parse_plan(data)
