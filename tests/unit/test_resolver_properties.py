"""Properties of the resolver on random plans, checked against graphlib as an oracle."""

from __future__ import annotations

import graphlib

from hypothesis import given, settings, strategies as st

from shared.resolver import dependencies, remaining_minutes, resolve
from shared.plan import Plan, parse_plan


@st.composite
def plans(draw, acyclic: bool) -> Plan:
    """Random plans. Epics only depend on earlier epics; in acyclic plans a task only depends on
    tasks of earlier epics or earlier in a hidden random order, so file and dependency order differ."""
    size = draw(st.integers(1, 30))
    epic_count = draw(st.integers(1, 5))
    rank = draw(st.permutations(range(size)))
    epic_of = [draw(st.integers(0, epic_count - 1)) for _ in range(size)]
    tasks = []
    for i in range(size):
        candidates = [j for j in range(size) if j != i and
                      (not acyclic or (epic_of[j], rank[j]) < (epic_of[i], rank[i]))]
        deps = draw(st.lists(st.sampled_from(candidates), max_size=4, unique=True)) if candidates else []
        tasks.append({"id": draw(st.sampled_from([i, str(i)])), "title": f"t{i}",
                      "depends_on": deps, "priority": draw(st.integers(1, 3)),
                      "dependency_type": draw(st.sampled_from(["hard", "soft"])),
                      "estimate_minutes": draw(st.sampled_from([0, 0.5, 1, 2, 5]))})
    epics = []
    for e in range(epic_count):
        earlier = list(range(e))
        epic_deps = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)) if earlier and \
            draw(st.integers(0, 3)) == 0 else []
        epics.append({"id": f"e{e}", "name": f"epic {e}", "priority": draw(st.integers(1, 3)),
                      "depends_on": [f"e{d}" for d in epic_deps],
                      "tasks": [t for i, t in enumerate(tasks) if epic_of[i] == e]})
    return parse_plan({"name": "random", "epics": epics})


def oracle_levels(plan: Plan) -> list[set[str]]:
    """Kahn levels by graphlib: each round of get_ready() after marking the previous done."""
    sorter = graphlib.TopologicalSorter({t: [d for d, _ in ds] for t, ds in dependencies(plan).items()})
    sorter.prepare()
    levels = []
    while ready := sorter.get_ready():
        levels.append(set(ready))
        sorter.done(*ready)
    return levels


@settings(max_examples=150, deadline=None)
@given(plans(acyclic=True))
def test_batches_respect_every_edge_and_are_minimal(plan):
    result = resolve(plan)
    deps = dependencies(plan)
    assert result.valid, result.errors
    batch_of = {t: k for k, batch in enumerate(result.batches) for t in batch}
    assert sorted(batch_of) == sorted(t.id for t in plan.tasks())
    assert sum(len(b) for b in result.batches) == len(batch_of)
    for task_id, task_deps in deps.items():
        assert all(batch_of[d] < batch_of[task_id] for d, _ in task_deps)
        if batch_of[task_id] == 0:
            assert task_deps == []
        else:
            assert any(batch_of[d] == batch_of[task_id] - 1 for d, _ in task_deps)
    assert [set(b) for b in result.batches] == oracle_levels(plan)


@settings(max_examples=150, deadline=None)
@given(plans(acyclic=True))
def test_batches_are_ordered_and_the_critical_path_is_a_longest_chain(plan):
    result = resolve(plan)
    epic_priority = {e.id: e.priority for e in plan.epics}

    def key(t):
        return epic_priority[plan.task(t).epic_id], plan.task(t).priority, plan.task(t).position

    assert all(batch == sorted(batch, key=key) for batch in result.batches)
    deps = {t: {d for d, _ in ds} for t, ds in dependencies(plan).items()}
    longest: dict[str, float] = {}
    for batch in result.batches:
        for t in batch:
            longest[t] = plan.task(t).estimate_minutes + max((longest[d] for d in deps[t]), default=0.0)
    path = result.critical_path
    assert path and all(earlier in deps[later] for earlier, later in zip(path, path[1:]))
    assert result.critical_path_minutes == max(longest.values())
    assert sum(plan.task(t).estimate_minutes for t in path) == result.critical_path_minutes
    assert max(remaining_minutes(plan).values()) == result.critical_path_minutes


@settings(max_examples=150, deadline=None)
@given(plans(acyclic=False))
def test_cycles_are_found_exactly_and_the_rest_still_resolves(plan):
    result = resolve(plan)
    deps = {t: {d for d, _ in ds} for t, ds in dependencies(plan).items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in deps[todo.pop()]:
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    on_a_cycle = {t for t in deps if t in reach(t)}
    resolvable = {t for t in deps if t not in on_a_cycle and not (reach(t) & on_a_cycle)}
    try:
        graphlib.TopologicalSorter({t: list(ds) for t, ds in deps.items()}).prepare()
        graphlib_sees_a_cycle = False
    except graphlib.CycleError:
        graphlib_sees_a_cycle = True
    assert result.valid == (not on_a_cycle) == (not graphlib_sees_a_cycle)
    assert {t for batch in result.batches for t in batch} == resolvable
    assert set(result.unresolved) == set(deps) - resolvable

    in_cycles = [t for problem in result.errors for t in problem.ids]
    assert {p.code for p in result.errors} <= {"cycle"}
    assert len(in_cycles) == len(set(in_cycles))  # each task in one component only
    for problem in result.errors:
        for t in problem.ids:
            assert set(problem.ids) <= reach(t)  # strongly connected
    assert set(in_cycles) == on_a_cycle
    blocked = {t for w in result.warnings if w.code == "blocked_by_cycle" for t in w.ids}
    assert blocked == set(result.unresolved) - on_a_cycle
