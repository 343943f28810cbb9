"""Plan versions as a fold over the plan's events, and a person's edit checked like Session 0's output."""

from __future__ import annotations

import msgspec
import pytest

from shared import events as ev
from shared.plan import PlanDoc
from shared.plan import versions

PLAN = {"name": "p", "epics": [{"id": "e", "name": "E", "tasks": [
    {"id": "a", "title": "A"}, {"id": "b", "title": "B", "depends_on": ["a"]}]}]}


def produced(n: int, plan=PLAN) -> ev.PlanProduced:
    return ev.PlanProduced(project_id="p", aggregate_id="x", plan=PlanDoc.of(plan), source="edit" if n > 1 else "session0",
                           version=n if n > 1 else 0)


def test_an_approval_from_before_versions_approves_the_version_of_its_time():
    old = versions.fold([produced(1), ev.PlanApproved(project_id="p", aggregate_id="x")])
    assert old.is_approved and old.approved == 1
    edited = versions.fold([produced(1), ev.PlanApproved(project_id="p", aggregate_id="x"), produced(2)])
    assert edited.latest == 2 and not edited.is_approved and edited.approved == 1
    assert versions.plan_state("x", [produced(1), produced(2)])["status"] == "produced"


def test_an_edit_changes_only_what_it_names_and_never_the_original():
    edit = versions.PlanEdit(tasks={"b": versions.TaskEdit(title="Bee", depends_on=[])}, remove=[])
    original = PlanDoc.of(PLAN)
    out = versions.apply_edit(original, edit)
    assert out.epics[0].tasks[1] == msgspec.structs.replace(original.epics[0].tasks[1], title="Bee", depends_on=[])
    assert out.epics[0].tasks[0] == original.epics[0].tasks[0] and original.epics[0].tasks[1].title == "B"


def test_removing_a_task_others_depend_on_names_each_dependent():
    with pytest.raises(versions.EditRefused) as refused:
        versions.apply_edit(PlanDoc.of(PLAN), versions.PlanEdit(remove=["a"]))
    assert refused.value.field == "tasks.b.depends_on"
    assert versions.apply_edit(PlanDoc.of(PLAN), versions.PlanEdit(remove=["a"], tasks={"b": versions.TaskEdit(depends_on=[])}))

