"""Editing a Session 0 plan over real HTTP: each edit is re-checked like Session 0's output and
recorded as the next version (a PlanProduced event), a version is approved, and a run by plan id
runs the approved version; bad edits are a 422 naming the field and append nothing."""

from __future__ import annotations

import pytest

from shared import events as ev
from shared.plan import PlanDoc
from tests.integration.test_gateway import PLAN
from tests.integration.test_gateway_commands import gateway, logged  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


async def produced(bus, plan_id: str = "pe1") -> None:
    await bus.publish(ev.PlanRequested(project_id="p", aggregate_id=plan_id, spec="a shop"), msg_id=f"{plan_id}:req")
    await bus.publish(ev.PlanProduced(project_id="p", aggregate_id=plan_id, plan=PlanDoc.of(PLAN), source="session0:sonnet",
                                      version=1), msg_id=f"{plan_id}:prod")


def tasks_of(plan: dict) -> dict[str, dict]:
    return {t["id"]: t for e in plan["epics"] for t in e["tasks"]}


async def test_an_edit_is_a_new_version_that_is_approved_and_run(gateway, bus, git_repo):  # noqa: F811
    await produced(bus)
    edit = {"base_version": 1, "edited_by": "ada", "remove": ["b"],
            "tasks": {"d": {"title": "Card payments", "description": "Stripe only", "complexity": "high",
                            "depends_on": ["a", "c"]}}}
    made = await gateway.post("/api/plans/pe1/versions", json=edit)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["new_version"] == 2 and body["version"] == 2 and body["status"] == "produced"
    assert [v["source"] for v in body["versions"]] == ["session0:sonnet", "edit"]
    assert body["versions"][1]["edited_by"] == "ada"
    tasks = tasks_of(body["plan"])
    assert "b" not in tasks and tasks["d"]["title"] == "Card payments" and tasks["d"]["complexity"] == "high"
    assert tasks["d"]["depends_on"] == ["a", "c"] and tasks["d"]["description"] == "Stripe only"
    [v2] = [e for e in await logged(bus) if isinstance(e, ev.PlanProduced) and e.source == "edit"]
    assert v2.version == 2 and v2.edited_by == "ada" and v2.aggregate_id == "pe1"

    # the edited version needs approving: approving the old one is refused, the new one is approved
    stale = await gateway.post("/api/plans/pe1/approve", json={"version": 1})
    assert stale.status_code == 409 and stale.json()["field"] == "version" and "version 2" in stale.json()["detail"]
    assert (await gateway.post("/api/runs", json={"plan_id": "pe1", "repo_path": str(git_repo)})).status_code == 409
    ok = await gateway.post("/api/plans/pe1/approve", json={"version": 2, "approved_by": "ada"})
    assert ok.status_code == 200 and ok.json()["status"] == "approved" and ok.json()["approved_version"] == 2
    [approval] = [e for e in await logged(bus) if isinstance(e, ev.PlanApproved)]
    assert approval.version == 2
    started = await gateway.post("/api/runs", json={"plan_id": "pe1", "repo_path": str(git_repo)})
    assert started.status_code == 201, started.text
    [run] = [e for e in await logged(bus) if isinstance(e, ev.RunStarted)]
    assert "b" not in tasks_of(run.plan.to_dict()) and tasks_of(run.plan.to_dict())["d"]["title"] == "Card payments"

    # an edit of an approved plan is version 3, not approved until someone approves it
    again = await gateway.post("/api/plans/pe1/versions", json={"base_version": 2, "tasks": {"a": {"title": "Tables"}}})
    assert again.status_code == 201 and again.json()["status"] == "produced" and again.json()["approved_version"] == 2
    # someone editing the version they loaded earlier is told the plan moved on
    late = await gateway.post("/api/plans/pe1/versions", json={"base_version": 2, "tasks": {"a": {"title": "X"}}})
    assert late.status_code == 409 and late.json()["field"] == "base_version" and "version 3" in late.json()["detail"]


@pytest.mark.parametrize("edit, field, words", [
    ({"tasks": {"a": {"depends_on": ["d"]}}}, "tasks.a.depends_on", "cycle"),
    ({"tasks": {"c": {"depends_on": ["ghost"]}}}, "tasks.c.depends_on", "ghost"),
    ({"remove": ["c"]}, "tasks.d.depends_on", "removes"),
    ({"remove": ["nope"]}, "remove[0]", "no task 'nope'"),
    ({"tasks": {"nope": {"title": "x"}}}, "tasks.nope", "no task 'nope'"),
    ({"tasks": {"a": {"complexity": "huge"}}}, "tasks.a.complexity", ""),
    ({"tasks": {"a": {"title": ""}}}, "tasks.a.title", ""),
    ({"tasks": {"a": {"owner": "bob"}}}, "tasks.a.owner", ""),
])
async def test_a_bad_edit_is_a_422_naming_the_field_and_records_nothing(gateway, bus, edit, field, words):  # noqa: F811
    await produced(bus)
    refused = await gateway.post("/api/plans/pe1/versions", json={"base_version": 1, **edit})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field and words in refused.json()["detail"]
    assert [e.source for e in await logged(bus) if isinstance(e, ev.PlanProduced)] == ["session0:sonnet"]


async def test_editing_an_unknown_or_unproduced_plan_is_clear(gateway, bus):  # noqa: F811
    missing = await gateway.post("/api/plans/nope/versions", json={"base_version": 1})
    assert missing.status_code == 404 and missing.json()["field"] == "plan_id"
    await bus.publish(ev.PlanRequested(project_id="p", aggregate_id="pw1", spec="?"), msg_id="pw1:req")
    waiting = await gateway.post("/api/plans/pw1/versions", json={"base_version": 1})
    assert waiting.status_code == 409 and "no version to edit" in waiting.json()["detail"]
