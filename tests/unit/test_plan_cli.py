"""`yokeflow plan check` and `plan show`, run in-process as a person would run them."""

from __future__ import annotations

import json

import pytest

from yokeflow.cli import main

VALID = """\
name: shop
epics:
  - id: 1
    name: Data layer
    priority: 1
    tasks:
      - {id: 11, title: Create the schema, estimate_minutes: 5}
      - {id: 12, title: Seed data, depends_on: [11]}
  - id: 2
    name: API
    depends_on: [1]
    tasks:
      - {id: 21, title: Cart endpoints, estimate_minutes: 3}
      - {id: 22, title: Checkout, depends_on: [21], dependency_type: soft}
  - id: 3
    name: Docs
    tasks:
      - {id: 31, title: Write the README}
"""

BROKEN = """\
name: broken
epics:
  - id: 1
    name: A
    tasks:
      - {id: 1, title: a, depends_on: [2]}
      - {id: 2, title: b, depends_on: [1]}
      - {id: 3, title: c, depends_on: [3, 99]}
      - {id: 4, title: d, depends_on: [1]}
      - {id: 5, title: e}
  - id: 2
    name: B
    tasks:
      - {id: "5", title: duplicate}
"""


@pytest.fixture
def write(tmp_path):
    def write(name: str, text: str | bytes) -> str:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)
    return write


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_json_prints_exactly_one_object_for_a_valid_plan(capsys, write):
    code, out, err = run(capsys, "plan", "check", write("shop.yaml", VALID), "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == {
        "valid": True, "batches": [["11", "31"], ["12"], ["21"], ["22"]],
        "critical_path": ["11", "12", "21", "22"], "critical_path_minutes": 10.0,
        "errors": [], "warnings": []}
    assert out.count("\n") == 1


def test_check_json_lists_every_error_and_exits_2(capsys, write):
    code, out, _ = run(capsys, "plan", "check", write("broken.yaml", BROKEN), "--json")
    report = json.loads(out)
    assert code == 2 and report["valid"] is False
    assert [(e["code"], e["ids"]) for e in report["errors"]] == [
        ("duplicate_id", ["5"]), ("self_dependency", ["3"]), ("missing_dependency", ["3", "99"]),
        ("cycle", ["1", "2"])]
    assert all(set(e) == {"code", "ids", "message", "path"} and e["message"] for e in report["errors"])
    assert report["batches"] == [["3", "5"]]
    assert [(w["code"], w["ids"]) for w in report["warnings"]] == [("blocked_by_cycle", ["4"])]


def test_check_text_shows_batches_critical_path_and_problems(capsys, write):
    code, out, _ = run(capsys, "plan", "check", write("shop.yaml", VALID))
    assert code == 0
    assert "batch 0: 11, 31" in out and "critical path (10 min): 11 → 12 → 21 → 22" in out
    assert out.rstrip().endswith("valid")
    code, out, _ = run(capsys, "plan", "check", write("broken.yaml", BROKEN))
    assert code == 2
    assert "error [cycle] epics[0].tasks[0].depends_on: tasks 1 → 2 → 1" in out
    assert "error [missing_dependency] epics[0].tasks[2].depends_on[1]: task 3 depends on task 99" in out
    assert "invalid: 4 errors" in out


def test_bad_fields_are_reported_as_invalid_field_errors_with_paths(capsys, write):
    plan = write("fields.json", json.dumps({"name": "p", "epics": [{"id": 1, "name": "A", "tasks": [
        {"id": 1, "title": "a", "dependency_type": "maybe", "colour": "red"}]}]}))
    code, out, _ = run(capsys, "plan", "check", plan, "--json")
    report = json.loads(out)
    assert code == 2 and report["batches"] == [] and report["critical_path"] == []
    assert {(e["code"], e["path"]) for e in report["errors"]} == {
        ("invalid_field", "epics[0].tasks[0].dependency_type"), ("invalid_field", "epics[0].tasks[0].colour")}


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"), (b"name: [unclosed\n", "not valid YAML"), (b"\xff\xfe\x00junk", "not UTF-8"),
    (b"just a string", "must be a mapping"),
])
def test_content_that_is_not_a_plan_exits_2_with_a_clear_error(capsys, write, content, fragment):
    code, out, _ = run(capsys, "plan", "check", write("bad.yaml", content), "--json")
    report = json.loads(out)
    assert code == 2 and report["valid"] is False and fragment in report["errors"][0]["message"]


def test_an_unreadable_file_is_one_line_and_exit_1(capsys, tmp_path):
    for argv in (["plan", "check", str(tmp_path / "missing.yaml"), "--json"],
                 ["plan", "show", str(tmp_path / "missing.yaml")], ["plan", "check", str(tmp_path)]):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == ""
        assert err.count("\n") == 1 and err.startswith("yokeflow: plan file ")


def test_show_draws_epics_as_columns_and_batches_as_rows_in_plain_text(capsys, write):
    code, out, _ = run(capsys, "plan", "show", write("shop.yaml", VALID))
    assert code == 0 and "\x1b[" not in out  # not a terminal: no escape codes
    lines = out.splitlines()
    header = next(line for line in lines if "epic 1: Data layer" in line)
    assert header.index("epic 1: Data layer") < header.index("epic 2: API") < header.index("epic 3: Docs")
    row_of = {task: i for i, line in enumerate(lines) for task in ("*11 ", "*12 ", "*21 ", "*22 ", " 31 ")
              if task in line}
    assert row_of["*11 "] == row_of[" 31 "] < row_of["*12 "] < row_of["*21 "] < row_of["*22 "]
    column = lines[row_of["*21 "]].index("*21 Cart endpoints")
    assert column > lines[row_of["*12 "]].index("*12 Seed data")
    assert "← 21 (soft)" in out and "waits for epics 1" in out


def test_show_marks_what_a_cycle_blocks_and_exits_2(capsys, write):
    code, out, _ = run(capsys, "plan", "show", write("broken.yaml", BROKEN))
    assert code == 2
    assert "blocked by a cycle" in out and "[cycle]" in out


def test_show_of_a_plan_with_bad_fields_prints_the_problems(capsys, write):
    code, out, _ = run(capsys, "plan", "show", write("bad.yaml", "name: p\nepics: 3\n"))
    assert code == 2 and "epics must be a list" in out


def test_plan_without_a_subcommand_prints_help(capsys):
    code, out, _ = run(capsys, "plan")
    assert code == 2 and "check" in out and "show" in out


def test_check_and_show_list_the_lanes_smart_would_share(capsys, write):
    plan = write("lanes.yaml", VALID.replace("{id: 12, title: Seed data,", "{id: 12, title: Seed data, files: [db/],")
                 .replace("{id: 11, title: Create the schema,", "{id: 11, title: Create db/schema.sql,")
                 .replace("{id: 31, title: Write the README}", "{id: 31, title: Write the README, files: [db/seed.sql]}"))
    for command in ("check", "show"):
        code, out, _ = run(capsys, "plan", command, plan)
        assert code == 0
        assert "lanes under parallel.strategy smart" in out and "2 other tasks run alone" in out
        assert "  lane/11-create-db-schema-sql: 11, 12, 31" in out
    code, out, _ = run(capsys, "plan", "check", write("shop.yaml", VALID))
    assert "lanes" not in out  # no task names a file: nothing shared, nothing printed
