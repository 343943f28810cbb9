"""The resolver on hand-made graphs: batches, order inside a batch, critical path, and every
problem named at once."""

from __future__ import annotations

import pytest

from shared.resolver import dependencies, dispatch_order_key, remaining_minutes, resolve
from shared.plan import Plan, parse_plan


def task(id, *deps, **fields) -> dict:
    return {"id": id, "title": f"task {id}", "depends_on": list(deps), **fields}


def epic(id, *tasks, **fields) -> dict:
    return {"id": id, "name": f"epic {id}", "tasks": list(tasks), **fields}


def plan_of(*epics) -> Plan:
    return parse_plan({"name": "test", "epics": list(epics)})


def codes(resolution) -> list[tuple[str, list[str]]]:
    return [(p.code, p.ids) for p in resolution.errors]


def test_a_diamond_runs_its_middle_in_parallel_and_takes_the_longer_side():
    plan = plan_of(epic(1, task("a", estimate_minutes=2), task("b", "a"), task("c", "a", estimate_minutes=5),
                        task("d", "b", "c")))
    result = resolve(plan)
    assert result.valid and result.errors == [] and result.warnings == []
    assert result.batches == [["a"], ["b", "c"], ["d"]]
    assert (result.critical_path, result.critical_path_minutes) == (["a", "c", "d"], 8.0)
    assert result.to_json() == {"valid": True, "batches": [["a"], ["b", "c"], ["d"]],
                                "critical_path": ["a", "c", "d"], "critical_path_minutes": 8.0,
                                "errors": [], "warnings": []}


def test_a_ten_thousand_task_chain_resolves_without_recursion():
    plan = plan_of(epic(1, task(0), *(task(i, i - 1) for i in range(1, 10_000))))
    result = resolve(plan)
    assert result.valid and len(result.batches) == 10_000
    assert result.critical_path == [str(i) for i in range(10_000)]
    assert result.critical_path_minutes == 10_000.0
    assert remaining_minutes(plan)["0"] == 10_000.0


def test_a_wide_fan_out_and_in_makes_three_batches():
    plan = plan_of(epic(1, task("root"), *(task(f"w{i}", "root") for i in range(500)),
                        task("sink", *(f"w{i}" for i in range(500)))))
    result = resolve(plan)
    assert [len(b) for b in result.batches] == [1, 500, 1]
    assert result.batches[1] == [f"w{i}" for i in range(500)]  # equal priorities: file order
    assert result.critical_path == ["root", "w0", "sink"]  # ties go to the earlier task


def test_soft_dependencies_order_batches_like_hard_ones():
    plan = plan_of(epic(1, task("a"), task("b", "a", dependency_type="soft")))
    assert resolve(plan).batches == [["a"], ["b"]]
    assert dependencies(plan) == {"a": [], "b": [("a", "soft")]}


def test_epic_dependencies_make_every_task_wait_for_every_task_of_the_other_epic():
    plan = plan_of(epic("data", task(1), task(2, 1)),
                   epic("api", task(3), task(4, 3, dependency_type="soft"), depends_on=["data"]),
                   epic("ui", task(5), depends_on=["api"]))
    result = resolve(plan)
    assert result.batches == [["1"], ["2"], ["3"], ["4"], ["5"]]
    assert dependencies(plan) == {
        "1": [], "2": [("1", "hard")], "3": [("1", "hard"), ("2", "hard")],
        "4": [("3", "soft"), ("1", "hard"), ("2", "hard")], "5": [("3", "hard"), ("4", "hard")]}


def test_an_epic_dependency_upgrades_a_soft_task_dependency_to_hard():
    plan = plan_of(epic("a", task(1)), epic("b", task(2, 1, dependency_type="soft"), depends_on=["a"]))
    assert dependencies(plan)["2"] == [("1", "hard")]


def test_inside_a_batch_epic_priority_then_task_priority_then_file_position():
    plan = plan_of(epic("low", task("l1", priority=1), task("l2"), priority=5),
                   epic("high", task("h1", priority=4), task("h2", priority=2), task("h3", priority=2),
                        priority=1),
                   epic("mid", task("m1")))
    assert resolve(plan).batches == [["h2", "h3", "h1", "m1", "l1", "l2"]]


def test_critical_path_ties_go_to_the_earlier_task_in_the_file():
    plan = plan_of(epic(1, task("x"), task("y"), task("z", "y"), task("w", "x")))
    result = resolve(plan)
    assert result.critical_path == ["x", "w"] and result.critical_path_minutes == 2.0


def test_the_critical_path_runs_through_epic_dependencies():
    plan = plan_of(epic("a", task(1, estimate_minutes=10), task(2)),
                   epic("b", task(3, estimate_minutes=4), depends_on=["a"]))
    result = resolve(plan)
    assert (result.critical_path, result.critical_path_minutes) == (["1", "3"], 14.0)


def test_several_disjoint_cycles_are_each_reported_in_cycle_order():
    plan = plan_of(epic(1, task("a", "c"), task("b", "a"), task("c", "b"), task("ok")),
                   epic(2, task("x", "y"), task("y", "x"), task("after", "y")),
                   epic(3, task("p", "q"), task("q", "r"), task("r", "p"), task("s", "r")))
    result = resolve(plan)
    assert not result.valid
    assert codes(result) == [("cycle", ["a", "c", "b"]), ("cycle", ["x", "y"]), ("cycle", ["p", "q", "r"])]
    assert "a → c → b → a" in result.errors[0].message
    assert result.errors[0].path == "epics[0].tasks[0].depends_on"
    assert result.batches == [["ok"]]
    assert [(w.code, w.ids) for w in result.warnings] == [("blocked_by_cycle", ["after", "s"])]
    assert result.unresolved == ["a", "b", "c", "x", "y", "after", "p", "q", "r", "s"]


def test_a_component_larger_than_one_cycle_lists_all_its_tasks():
    plan = plan_of(epic(1, task("a", "b", "c"), task("b", "a"), task("c", "a")))
    (problem,) = resolve(plan).errors
    assert problem.code == "cycle" and sorted(problem.ids) == ["a", "b", "c"] and problem.ids[0] == "a"
    assert "for example a → b → a" in problem.message


def test_cycles_among_epics_are_named_with_epic_ids():
    plan = plan_of(epic("e1", task(1), depends_on=["e2"]), epic("e2", task(2), depends_on=["e1"]),
                   epic("e3", task(3)))
    result = resolve(plan)
    assert codes(result) == [("cycle", ["e1", "e2"])]
    assert "epics e1 → e2 → e1" in result.errors[0].message
    assert result.batches == [["3"]] and result.warnings == []


def test_a_cycle_through_an_epic_dependency_names_the_epic():
    plan = plan_of(epic("e1", task(1, 3)), epic("e2", task(3), depends_on=["e1"]))
    (problem,) = resolve(plan).errors
    assert problem.ids == ["1", "3"]
    assert "1 → 3 → epic e1 → 1" in problem.message


def test_missing_task_and_epic_references_are_all_reported_and_the_rest_still_resolves():
    plan = plan_of(epic(1, task("a", "ghost", "b"), task("b"), task("c", "e2"), depends_on=["nope", "a"]),
                   epic("e2", task("d")))
    result = resolve(plan)
    assert codes(result) == [("missing_dependency", ["1", "nope"]), ("missing_dependency", ["1", "a"]),
                             ("missing_dependency", ["a", "ghost"]), ("missing_dependency", ["c", "e2"])]
    by_path = {p.path: p.message for p in result.errors}
    assert "a is a task id" in by_path["epics[0].depends_on[1]"]
    assert "e2 is an epic id" in by_path["epics[0].tasks[2].depends_on[0]"]
    assert result.batches == [["b", "c", "d"], ["a"]]


def test_duplicate_ids_match_across_int_and_string():
    plan = plan_of(epic(1, task(11), task("12")), epic("1", task("11"), task(12)))
    result = resolve(plan)
    assert codes(result) == [("duplicate_id", ["11"]), ("duplicate_id", ["12"]), ("duplicate_id", ["1"])]
    assert result.errors[0].path == "epics[1].tasks[0]"
    assert "epics[0].tasks[0], epics[1].tasks[0]" in result.errors[0].message


def test_self_dependencies_of_tasks_and_epics_are_errors():
    plan = plan_of(epic(1, task("a", "a"), depends_on=[1]))
    result = resolve(plan)
    assert codes(result) == [("self_dependency", ["1"]), ("self_dependency", ["a"])]
    assert result.batches == [["a"]]


def test_repeated_dependencies_and_empty_epics_are_warnings():
    plan = plan_of(epic(1, task("a"), task("b", "a", "a")), epic(2, depends_on=[1, "1"]))
    result = resolve(plan)
    assert result.valid
    assert [(w.code, w.path) for w in result.warnings] == [
        ("duplicate_dependency", "epics[1].depends_on[1]"), ("empty_epic", "epics[1]"),
        ("duplicate_dependency", "epics[0].tasks[1].depends_on[1]")]


def test_ten_thousand_cycles_are_all_named():
    plan = plan_of(epic(1, *(t for i in range(10_000) for t in (task(f"a{i}", f"b{i}"), task(f"b{i}", f"a{i}")))))
    result = resolve(plan)
    assert len(result.errors) == 10_000 and {p.code for p in result.errors} == {"cycle"}
    assert result.errors[-1].ids == ["a9999", "b9999"] and result.batches == []


def test_remaining_minutes_is_the_longest_path_to_the_end_and_orders_dispatch():
    plan = plan_of(epic(1, task("a", estimate_minutes=2), task("b", "a", estimate_minutes=3), task("c", "a"),
                        task("d", "c", estimate_minutes=7), task("solo", estimate_minutes=1, priority=1)))
    remaining = remaining_minutes(plan)
    assert remaining == {"a": 10.0, "b": 3.0, "c": 8.0, "d": 7.0, "solo": 1.0}
    ready = ["b", "c", "solo"]
    assert sorted(ready, key=lambda t: dispatch_order_key(plan, t, remaining)) == ["solo", "c", "b"]
    assert dispatch_order_key(plan, "b", remaining) == (3, -3.0, 1)


def test_an_empty_epic_gives_no_batches():
    result = resolve(plan_of(epic(1)))
    assert result.valid and result.batches == [] and result.critical_path == []
    assert result.critical_path_minutes == 0.0


@pytest.mark.parametrize("estimate", [0, 0.5])
def test_fractional_and_zero_estimates_add_up(estimate):
    plan = plan_of(epic(1, task("a", estimate_minutes=estimate), task("b", "a", estimate_minutes=estimate)))
    assert resolve(plan).critical_path_minutes == 2 * estimate
