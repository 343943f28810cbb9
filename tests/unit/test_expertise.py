"""Expertise documents: extraction from an attempt's log, curation, the line cap, validation, YAML."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.expertise.model import normalise
from shared.expertise import (AttemptLog, Document, Entry, ExpertiseError, Origin, error_signature, extract,
                              for_prompt, learn, parse, prune, render, validate)

ORIGIN = Origin(run_id="r1", task_id="11", attempt=1)
PRD_KEYS = ["domain", "overview", "core_files", "patterns", "best_practices", "learned_from_failures",
            "effective_patterns"]


def call(i: int, name: str, **tool_input) -> tuple[str, dict]:
    return ("tool_call", {"id": f"t{i}", "name": name, "input": tool_input})


def result(i: int, text: str, is_error: bool = False) -> tuple[str, dict]:
    return ("tool_result", {"id": f"t{i}", "name": "x", "is_error": is_error, "text": text})


def fail_edit_pass_log() -> AttemptLog:
    return AttemptLog([
        call(1, "read_file", path="calc.py"), result(1, "1\tdef add(a, b): return a - b"),
        call(2, "run_command", command="python -m pytest -q"),
        result(2, "exit code 1\nE   AssertionError: assert -1 == 5\nFAILED tests/test_calc.py::test_add", True),
        call(3, "edit_file", path="calc.py", old_text="a - b", new_text="a + b"), result(3, "replaced 1"),
        call(4, "run_command", command="python -m pytest -q"), result(4, "exit code 0\n1 passed in 0.01s"),
        ("check_result", {"command": "python -m pytest -q", "exit_code": 0, "passed": True, "output": "1 passed"}),
    ])


def test_a_failure_fixed_within_the_attempt_is_learned_with_its_signature_and_the_file_that_fixed_it():
    entries = extract(fail_edit_pass_log(), origin=ORIGIN, outcome="success", title="add numbers", now="t1")
    [failure] = [e for e in entries if e.kind == "failure"]
    assert failure.error == "FAILED tests/test_calc.py::test_add" or "AssertionError" in failure.error
    assert failure.files == ["calc.py"] and "`calc.py`" in failure.solution and "passed" in failure.solution
    assert failure.origin == ORIGIN
    assert [e.path for e in entries if e.kind == "core_file"] == ["calc.py"]
    assert any(e.kind == "effective_pattern" and "pytest" in e.text for e in entries)


def test_a_failure_never_fixed_is_learned_without_a_solution_and_no_core_files():
    log = AttemptLog([call(1, "run_command", command="make build"),
                      result(1, "exit code 2\nmake: *** No rule to make target 'build'.  Stop.", True),
                      call(2, "write_file", path="Makefile", content="x"), result(2, "wrote")])
    entries = extract(log, origin=ORIGIN, outcome="failure", now="t1")
    assert [e.kind for e in entries] == ["failure"]
    assert entries[0].solution == "" and "No rule to make target" in entries[0].error


def test_signatures_ignore_what_changes_between_runs():
    a = error_signature("Traceback...\n  File \"/tmp/x1/a.py\", line 3\nValueError: bad 0x7f01 at /tmp/abc/q")
    b = error_signature("Traceback...\n  File \"/tmp/zz/a.py\", line 9\nValueError: bad 0x7e22 at /tmp/def/q")
    assert a == b and a.startswith("ValueError")


def test_a_repeat_reinforces_and_a_newer_fix_replaces_an_older_one():
    first = extract(fail_edit_pass_log(), origin=ORIGIN, outcome="success", now="t1")
    doc = learn(Document(domain="api"), first, now="t1")
    again = learn(doc, first, now="t2")
    assert len(again.entries) == len(doc.entries)
    f = next(e for e in again.entries if e.kind == "failure")
    assert f.confirmations == 2 and f.score == 2.0 and f.confirmed_at == "t2"
    newer = Entry(kind="failure", key=f.key, error=f.error, solution="pin the fixture", files=["conftest.py"])
    replaced = next(e for e in learn(again, [newer], now="t3").entries if e.kind == "failure")
    assert replaced.solution == "pin the fixture" and replaced.files == ["conftest.py"]


def test_flooding_a_domain_keeps_it_under_the_cap_valid_and_keeps_the_most_valuable():
    valuable = Entry(kind="pattern", key="use the repository layer", text="use the repository layer", score=50.0)
    flood = [Entry(kind="pattern", key=normalise(text), text=text, confirmed_at=f"{i:05d}")
             for i in range(10_000) for text in [f"note {i} " + "x" * (i % 50)]]
    doc = learn(Document(domain="api"), [valuable, *flood], now="t")
    capped = prune(doc, 1000)
    text = render(capped)
    assert text.count("\n") <= 1000
    data = yaml.safe_load(text)
    assert list(data) == PRD_KEYS
    assert any(e.key == valuable.key for e in capped.entries)
    kept = {e.key for e in capped.entries}
    assert normalise("note 9999 " + "x" * 49) in kept and "note 0" not in kept  # ties broken by the most recently confirmed
    assert parse(text) == capped  # the YAML carries the whole document


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=150)
_entries = st.lists(st.builds(
    Entry, kind=st.sampled_from(["core_file", "pattern", "best_practice", "failure", "effective_pattern"]),
    key=st.text(min_size=1, max_size=30), text=_text, path=st.text(max_size=40), issue=_text, error=_text,
    solution=_text, files=st.lists(st.text(max_size=40), max_size=3), flagged=st.text(max_size=20),
    score=st.floats(0, 100)), max_size=25)


@settings(max_examples=150, deadline=None)
@given(entries=_entries, overview=_text, cap=st.integers(10, 400), given_counts=st.dictionaries(
    st.text(max_size=12), st.integers(0, 5), max_size=5))
def test_lines_are_counted_as_rendered_and_pruning_keeps_to_the_cap(entries, overview, cap, given_counts):
    """The learner counts a version's lines (and prunes by them) without rendering it: the count is the
    rendered YAML's, however long or multi-line its texts, and a pruned document fits its cap."""
    from shared.expertise.model import line_count

    doc = Document(domain="api", overview=overview, entries=entries)
    assert line_count(doc) == render(doc).count("\n")
    pruned = prune(doc, cap, given=given_counts)
    assert line_count(pruned) == render(pruned).count("\n")
    assert line_count(pruned) <= cap or not pruned.entries
    rest = iter(doc.entries)
    assert all(any(e is x for x in rest) for e in pruned.entries)  # some of them, in their original order
    if line_count(doc) <= cap:
        assert pruned == doc


def test_prune_prefers_entries_given_to_agents():
    a = Entry(kind="pattern", key="a", text="a")
    b = Entry(kind="pattern", key="b", text="b")
    doc = Document(domain="api", entries=[a, b])
    small = render(Document(domain="api", entries=[a])).count("\n")
    assert [e.key for e in prune(doc, small, given={b.id: 3}).entries] == ["b"]


def test_validation_flags_then_prunes_an_entry_whose_file_is_gone():
    doc = learn(Document(domain="api"), [Entry(kind="core_file", key="gone.py", path="gone.py", files=["gone.py"]),
                                         Entry(kind="core_file", key="here.py", path="here.py", files=["here.py"])],
                now="t")
    exists = {"here.py"}.__contains__
    flagged, report = validate(doc, exists, now="t1")
    assert [f["missing"] for f in report["flagged"]] == [["gone.py"]] and len(flagged.entries) == 2
    text, given = for_prompt([flagged])
    assert "gone.py" not in text and "here.py" in text and len(given) == 1
    pruned, report = validate(flagged, exists, now="t2")
    assert [e.path for e in pruned.entries] == ["here.py"] and report["pruned"]


def test_the_prompt_gets_the_most_useful_entries_within_its_budget():
    strong = Entry(kind="pattern", key="s", text="strong", score=9.0)
    weak = Entry(kind="pattern", key="w", text="weak " * 200, score=1.0)
    text, given = for_prompt([Document(domain="api", entries=[weak, strong])], budget_tokens=60)
    assert text.startswith("- [api] pattern: strong") and given == [strong.id]


def test_prd_shaped_seed_files_parse_and_bad_ones_name_the_problem():
    seed = ("domain: database\noverview: PostgreSQL patterns\ncore_files:\n  - src/db/schema.sql\n"
            "patterns:\n  - Always use UUID for primary keys\nbest_practices:\n  - Run migrations in transactions\n"
            "learned_from_failures:\n  - issue: Windows encoding error\n    error: UnicodeDecodeError\n"
            "    solution: Use encoding='utf-8'\neffective_patterns:\n  - Read, edit, test\n")
    doc = parse(seed)
    assert doc.domain == "database" and len(doc.entries) == 5
    assert parse(render(doc)) == doc
    for bad, says in [("domain: [x\n", "not valid YAML"), ("- a\n", "expected a mapping"),
                      ("domain: api\nrecipes: []\n", "unknown key"), ("domain: 'Bad Name'\n", "not a domain name"),
                      ("domain: api\nlearned_from_failures:\n  - issue: x\n", "`error` is required")]:
        with pytest.raises(ExpertiseError, match=says):
            parse(bad, source="seed.yaml")


def test_measures_count_coverage_use_within_the_window_and_repeated_errors():
    from shared import events as ev
    from shared.expertise.measures import learning_measures

    fail = Entry(kind="failure", key="boom", error="boom")
    tip = Entry(kind="pattern", key="tip", text="tip")

    def started(task, given=()):
        return ev.AgentStarted(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task,
                               expertise_given=list(given))

    def learned(task, *entries):
        return ev.LearningExtracted(project_id="p", aggregate_id="api", run_id="r", task_id=task, attempt=1,
                                    entries=list(entries))

    log = [started("a"), learned("a", fail, tip), started("b", [fail.id]), learned("b", fail),
           started("c"), started("d"), started("e"), started("f"), started("g", [tip.id])]
    m = learning_measures(log, window=5)
    assert m["tasks_started"] == 7 and m["expertise_coverage"] == round(2 / 7, 4)
    assert m["entries_learned"] == 2 and m["entries_used_within_n"] == 0.5  # tip was given only at the 6th start
    assert m["failures_met"] == 2 and m["repeat_error_rate"] == 0.5


def test_distil_asks_with_the_attempt_log_and_keeps_only_entries_a_seed_file_would_accept():
    from shared.expertise import distil

    log = AttemptLog([("tool_call", {"name": "run_command", "id": "1", "input": {"command": "pytest"}}),
                      ("tool_result", {"id": "1", "is_error": True, "text": "E   KeyError: 'user_id'"})])
    body = distil.request(log, task="t1: Users", domain="api", outcome="failure")
    assert body["tool_choice"] == {"type": "tool", "name": distil.TOOL_NAME}
    assert "KeyError: 'user_id'" in body["messages"][0]["content"] and "Outcome: failure" in body["messages"][0]["content"]
    content = [{"type": "tool_use", "name": distil.TOOL_NAME, "input": {
        "learned_from_failures": [{"issue": "users lookup", "error": "KeyError: 'user_id'", "solution": "use .get"}],
        "core_files": [{"path": "api/users.py", "purpose": "the users routes"}, {"purpose": "no path"}],
        "effective_patterns": "not a list", "nonsense": [{"text": "x"}]}}]
    origin = Origin(run_id="r", task_id="t1", attempt=1)
    entries, dropped = distil.entries_from(content, origin=origin, now="2026-12-03T00:00:00Z")
    assert [(e.kind, e.key) for e in entries] == [("failure", entries[0].key), ("core_file", "api/users.py")]
    assert all(e.origin == origin and e.learned_at == "2026-12-03T00:00:00Z" for e in entries)
    assert len(dropped) == 3 and any("path" in d for d in dropped)
    assert distil.entries_from([{"type": "text", "text": "no tool"}], origin=origin, now="")[0] == []


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_entry = st.builds(
    Entry, kind=st.sampled_from(["core_file", "pattern", "best_practice", "failure", "effective_pattern"]),
    key=st.text(min_size=1, max_size=40), text=_text, path=st.text(max_size=60), issue=_text, error=_text,
    solution=_text, files=st.lists(st.text(max_size=40), max_size=3),
    origin=st.builds(Origin, run_id=st.text("abc", max_size=4), task_id=st.text("12", max_size=3),
                     attempt=st.integers(0, 3)),
    learned_at=st.text(max_size=30), confirmations=st.integers(1, 5), score=st.floats(-5, 5),
    flagged=st.text(max_size=50))


@settings(max_examples=300, deadline=None)
@given(overview=_text, entries=st.lists(_entry, max_size=8))
def test_a_document_renders_the_bytes_of_one_dump_of_the_whole_mapping(overview, entries):
    """`render` joins its entries' items (each dumped once and remembered): the bytes must be those
    of dumping the PRD-shaped mapping at once, whatever the texts (long, multi-line, quoted, unicode)."""
    from shared.expertise.model import DUMPER, SECTION, entry_yaml

    doc = Document(domain="general", overview=overview, entries=entries)
    data = {"domain": doc.domain, "overview": doc.overview,
            **{SECTION[k]: [entry_yaml(e) for e in entries if e.kind == k] for k in SECTION}}
    assert render(doc) == yaml.dump(data, sort_keys=False, allow_unicode=True, width=120, Dumper=DUMPER)
    assert yaml.safe_load(render(doc))["overview"] == overview
