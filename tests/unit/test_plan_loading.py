"""Loading and checking plan files: every bad field named with its path, nothing dropped."""

from __future__ import annotations

import json
import random

import pytest

from shared.plan import (
    MAX_FIELD_PROBLEMS, Plan, PlanError, PlanFileUnreadable, decode_plan_text, estimate_complexity,
    load_plan, parse_plan, plan_to_dict, task_complexity, write_plan,
)

TODO_YAML = """\
name: todo-api
epics:
  - id: 1
    name: Data layer
    priority: 1
    depends_on: []
    tasks:
      - id: 11
        title: Create the schema
        description: Tables for todos
        priority: 1
        depends_on: [10]
        dependency_type: hard
        domain: database
        complexity: high
        estimate_minutes: 5
        tests: ["pytest -q tests/test_schema.py"]
      - id: 10
        title: Pick the database
  - id: api
    name: HTTP API
    depends_on: [1]
    tasks:
      - {id: "21", title: CRUD endpoints, dependency_type: soft, domain: api}
"""


def problems_of(data) -> dict[str, str]:
    with pytest.raises(PlanError) as caught:
        parse_plan(data)
    assert all(p.code == "invalid_field" for p in caught.value.problems)
    return {p.path: p.message for p in caught.value.problems}


def minimal(**task_fields) -> dict:
    return {"name": "p", "epics": [{"id": 1, "name": "E", "tasks": [{"id": 1, "title": "t", **task_fields}]}]}


def test_a_full_plan_loads_with_every_field_and_default(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(TODO_YAML)
    plan = load_plan(path)
    assert plan.name == "todo-api"
    assert [e.id for e in plan.epics] == ["1", "api"]
    schema = plan.task("11")
    assert (schema.epic_id, schema.priority, schema.depends_on, schema.domain, schema.complexity,
            schema.estimate_minutes, schema.tests, schema.position) == \
        ("1", 1, ("10",), "database", "high", 5.0, ("pytest -q tests/test_schema.py",), 0)
    pick = plan.task("10")
    assert (pick.priority, pick.depends_on, pick.dependency_type, pick.domain, pick.complexity,
            pick.estimate_minutes, pick.tests, pick.position) == (3, (), "hard", "general", None, 1.0, (), 1)
    assert plan.task(21).dependency_type == "soft" and plan.task("21").position == 2
    assert plan.epic("api").depends_on == ("1",) and plan.epic(1).priority == 1
    assert [t.id for t in plan.tasks()] == ["11", "10", "21"]


def test_lookups_name_the_missing_id():
    plan = parse_plan(minimal())
    with pytest.raises(KeyError, match="no task with id '9'"):
        plan.task("9")
    with pytest.raises(KeyError, match="no epic with id 'x'"):
        plan.epic("x")


def test_the_file_format_round_trips_through_yaml_and_json(tmp_path):
    plan = load_plan(tmp_path.joinpath("p.yaml").write_text(TODO_YAML) and tmp_path / "p.yaml")
    assert parse_plan(plan_to_dict(plan)) == plan
    assert load_plan(write_plan(plan, tmp_path / "again.json")) == plan
    assert load_plan(write_plan(plan, tmp_path / "again.yml")) == plan
    assert all(isinstance(t["id"], str) for e in plan_to_dict(plan)["epics"] for t in e["tasks"])


def test_declared_files_are_kept_trimmed_and_round_trip(tmp_path):
    data = minimal(files=[" src/api/users.py ", "src/api/**", "docs/"])
    data["epics"][0]["tasks"].append({"id": 2, "title": "no files"})
    plan = parse_plan(data)
    assert plan.tasks()[0].files == ("src/api/users.py", "src/api/**", "docs/")
    written = plan_to_dict(plan)["epics"][0]["tasks"]
    assert written[0]["files"] == ["src/api/users.py", "src/api/**", "docs/"]
    assert "files" not in written[1]  # absent stays absent: existing plans are written as before
    assert load_plan(write_plan(plan, tmp_path / "p.yaml")) == plan


def test_files_outside_the_repository_are_refused_with_their_paths():
    data = minimal(files=["/etc/hosts", "src/../../x", "", 3])
    with pytest.raises(PlanError) as caught:
        parse_plan(data)
    paths = [p.path for p in caught.value.problems]
    assert paths == [f"epics[0].tasks[0].files[{i}]" for i in range(4)]
    assert "no leading / and no .." in caught.value.problems[0].message


def test_unknown_fields_and_bad_values_are_all_reported_with_their_paths():
    data = {"name": "p", "owner": "me", "epics": [
        {"id": 1, "name": "A", "priority": 0, "tasks": [
            {"id": 11, "title": "ok", "dependency_type": "firm", "estimat_minutes": 3}]},
        {"id": 2, "name": "B", "tasks": [
            {"id": 21, "title": "", "domain": "backend", "complexity": "huge", "estimate_minutes": -1,
             "priority": 2.5, "depends_on": [True, 1.5, None, ""], "tests": ["ok", ""]},
            "not a task"]},
        {"id": [1], "nam": "C", "tasks": "none"}]}
    found = problems_of(data)
    assert set(found) == {
        "owner", "epics[0].priority", "epics[0].tasks[0].dependency_type", "epics[0].tasks[0].estimat_minutes",
        "epics[1].tasks[0].title", "epics[1].tasks[0].domain", "epics[1].tasks[0].complexity",
        "epics[1].tasks[0].estimate_minutes", "epics[1].tasks[0].priority",
        "epics[1].tasks[0].depends_on[0]", "epics[1].tasks[0].depends_on[1]", "epics[1].tasks[0].depends_on[2]",
        "epics[1].tasks[0].depends_on[3]", "epics[1].tasks[0].tests[1]", "epics[1].tasks[1]",
        "epics[2].id", "epics[2].nam", "epics[2].name", "epics[2].tasks"}
    assert "did you mean 'estimate_minutes'" in found["epics[0].tasks[0].estimat_minutes"]
    assert "hard, soft" in found["epics[0].tasks[0].dependency_type"]
    assert "database" in found["epics[1].tasks[0].domain"]


def test_the_error_text_lists_every_problem_one_per_line():
    with pytest.raises(PlanError) as caught:
        parse_plan(minimal(domain="x", priority=-1))
    lines = str(caught.value).splitlines()
    assert len(lines) == 2 and lines[0].startswith("epics[0].tasks[0].priority:")


@pytest.mark.parametrize("data, path", [
    (None, ""), ([], ""), ("text", ""), ({"name": "p"}, "epics"), ({"epics": [{"id": 1, "name": "E"}]}, "name"),
    ({"name": "p", "epics": []}, "epics"), ({"name": "p", "epics": {"id": 1}}, "epics"),
    ({"name": "  ", "epics": [{"id": 1, "name": "E"}]}, "name"),
])
def test_a_plan_without_its_required_shape_is_refused(data, path):
    assert path in problems_of(data)


def test_ids_are_text_whatever_their_type_in_the_file():
    plan = parse_plan({"name": "p", "epics": [{"id": 1.0, "name": "E", "depends_on": None, "tasks": [
        {"id": 7, "title": "a", "depends_on": ["8", 9]}, {"id": "8", "title": "b"}, {"id": 9, "title": "c"}]}]})
    assert plan.epics[0].id == "1"
    assert plan.task("7").depends_on == ("8", "9")


def test_yaml_and_json_syntax_errors_give_line_and_column(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: p\nepics:\n  - id: 1\n   name: [\n")
    with pytest.raises(PlanError, match=r"bad.yaml is not valid YAML: .* at line \d+, column \d+"):
        load_plan(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": "p",\n "epics": [}\n')
    with pytest.raises(PlanError, match=r"bad.json is not valid JSON: .* at line 2, column 12"):
        load_plan(bad_json)


def test_duplicate_keys_are_errors_not_silently_overwritten(tmp_path):
    with pytest.raises(PlanError, match=r"duplicate key 'title' at line 5, column 3"):
        decode_plan_text(b"name: p\nepics:\n- id: 1\n  title: a\n  title: b\n", "p.yaml")
    with pytest.raises(PlanError, match=r"duplicate key 'id'"):
        decode_plan_text(b'{"name": "p", "epics": [{"id": 1, "id": 2}]}', "p.json")


def test_missing_files_and_folders_are_unreadable_with_the_path(tmp_path):
    with pytest.raises(PlanFileUnreadable, match=f"{tmp_path}/nope.yaml does not exist"):
        load_plan(tmp_path / "nope.yaml")
    with pytest.raises(PlanFileUnreadable, match="is a folder"):
        load_plan(tmp_path)


def test_a_file_without_end_is_refused_by_what_was_read_not_what_it_claims(tmp_path):
    """/dev/zero (and a pipe) says its size is 0: reading it whole would never end."""
    with pytest.raises(PlanFileUnreadable, match=r"plan file /dev/zero is over 64 MB"):
        load_plan("/dev/zero")
    import os
    import threading

    pipe = tmp_path / "plan.fifo"  # a plan from a pipe (`yokeflow run <(make-plan)`) still loads
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text(TODO_YAML), daemon=True)  # never holds pytest up
    writer.start()
    try:
        assert load_plan(pipe).name == "todo-api"
    finally:
        writer.join(timeout=10)


@pytest.mark.parametrize("content", [b"", b"   \n\n\t", b"# only a comment\n"])
def test_an_empty_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "empty.yaml"
    path.write_bytes(content)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert not isinstance(caught.value, PlanFileUnreadable)
    assert "empty" in str(caught.value) or "got nothing (null)" in str(caught.value)


@pytest.mark.parametrize("make_junk", [
    lambda rng: bytes(rng.getrandbits(8) for _ in range(5 * 1024 * 1024)),
    lambda rng: ("".join(rng.choice("abc: -[]{}'\"\n ") for _ in range(5 * 1024 * 1024))).encode(),
    lambda rng: b"[" * (5 * 1024 * 1024),
    lambda rng: ("\n".join(f"field{i}: {i}" for i in range(300_000))).encode(),
])
def test_five_megabytes_of_junk_give_a_bounded_clear_error(tmp_path, make_junk):
    path = tmp_path / "junk.yaml"
    path.write_bytes(make_junk(random.Random(7))[: 5 * 1024 * 1024])
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    problems = caught.value.problems
    assert 1 <= len(problems) <= MAX_FIELD_PROBLEMS + 1
    assert all(p.message for p in problems)


def test_field_problems_beyond_the_cap_are_counted_not_dropped():
    data = {"name": "p", "epics": [{"id": 1, "name": "E", "tasks": [{"id": i, "title": ""} for i in range(1500)]}]}
    with pytest.raises(PlanError) as caught:
        parse_plan(data)
    assert len(caught.value.problems) == MAX_FIELD_PROBLEMS + 1
    assert caught.value.problems[-1].message == "... and 500 more invalid fields not listed"


def test_a_json_plan_is_read_by_its_name(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(minimal(depends_on=[])))
    assert isinstance(load_plan(path), Plan)


@pytest.mark.parametrize("task, expected", [
    ({"title": "Fix a typo in the README"}, "low"),
    ({"title": "Add a list endpoint", "description": "GET /todos returning JSON"}, "low"),
    ({"title": "Add OAuth login", "description": "sessions stored server side"}, "medium"),
    ({"title": "Database migration", "description": "migrate the schema with concurrent writers"}, "high"),
    ({"title": "Build the page", "estimate_minutes": 150}, "medium"),
    ({"title": "Build the page", "estimate_minutes": 150, "tests": ["a", "b", "c", "d"]}, "high"),
])
def test_complexity_is_estimated_from_words_and_size(task, expected):
    assert estimate_complexity(task) == expected
    plan = parse_plan(minimal(**task))
    assert task_complexity(plan.task("1")) == expected
    assert task_complexity(parse_plan(minimal(**task, complexity="high")).task("1")) == "high"

