"""Commands through the gateway over real HTTP: each lands on the bus as its event, or is
refused with a 4xx that names the field at fault and appends nothing."""

from __future__ import annotations

import httpx
import pytest

from shared import events as ev
from shared.plan import PlanDoc
from tests.integration.test_gateway import AUTH, PLAN, client, publish_and_project, run_events, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        async with client(url, timeout=30) as c:
            yield c


async def logged(bus) -> list[ev.Event]:
    return [d.event async for d in bus.read()]


async def test_a_bad_plan_is_refused_with_every_problem(gateway, bus, git_repo):
    plan = {"name": "bad", "epics": [{"id": "e", "name": "E", "tasks": [
        {"id": "x", "title": "X", "depends_on": ["y"]},
        {"id": "y", "title": "Y", "depends_on": ["x"]},
        {"id": "z", "title": "Z", "depends_on": ["ghost"]}]}]}
    res = await gateway.post("/api/runs", json={"plan": plan, "repo_path": str(git_repo)})
    assert res.status_code == 422
    body = res.json()
    assert body["field"] == "plan"
    codes = {p["code"] for p in body["problems"]}
    assert {"cycle", "missing_dependency"} <= codes
    assert "ghost" in body["detail"]
    assert await logged(bus) == []


async def test_a_malformed_plan_names_the_bad_field(gateway, git_repo):
    res = await gateway.post("/api/runs", json={"plan": {"name": "x", "epics": "nope"}, "repo_path": str(git_repo)})
    assert res.status_code == 422 and res.json()["field"] == "plan"
    assert any("epics" in p["path"] for p in res.json()["problems"])
    missing = await gateway.post("/api/runs", json={"repo_path": str(git_repo)})
    assert missing.status_code == 422 and missing.json()["field"] == "plan"


async def test_a_missing_repository_is_refused_on_repo_path(gateway, bus, tmp_path):
    res = await gateway.post("/api/runs", json={"plan": PLAN, "repo_path": str(tmp_path / "absent")})
    assert res.status_code == 422 and res.json()["field"] == "repo_path"
    assert "does not exist" in res.json()["detail"]
    (tmp_path / "plain").mkdir()
    not_git = await gateway.post("/api/runs", json={"plan": PLAN, "repo_path": str(tmp_path / "plain")})
    assert not_git.status_code == 422 and not_git.json()["field"] == "repo_path"
    empty = await gateway.post("/api/runs", json={"plan": PLAN, "repo_path": " "})
    assert empty.status_code == 422 and empty.json()["field"] == "repo_path"
    assert await logged(bus) == []


async def test_bad_settings_are_refused_on_settings(gateway, git_repo):
    res = await gateway.post("/api/runs", json={"plan": PLAN, "repo_path": str(git_repo),
                                                "settings": {"parallel": {"max_concurrency": 0}}})
    assert res.status_code == 422 and res.json()["field"] == "settings"
    assert "max_concurrency" in res.json()["detail"]
    unknown = await gateway.post("/api/runs", json={"plan": PLAN, "repo_path": str(git_repo),
                                                    "settings": {"turbo": {"on": True}}})
    assert unknown.status_code == 422 and unknown.json()["field"] == "settings.turbo"


async def test_a_good_plan_starts_a_run_readable_at_once(gateway, bus, git_repo):
    res = await gateway.post("/api/runs", params={"wait": "true"}, json={
        "plan": PLAN, "repo_path": str(git_repo), "settings": {"parallel": {"max_concurrency": 5}}})
    assert res.status_code == 201, res.text
    body = res.json()
    assert res.headers["location"] == f"/api/runs/{body['run_id']}"
    [started] = [e for e in await logged(bus) if isinstance(e, ev.RunStarted)]
    assert started.run_id == body["run_id"] and started.project_id == body["project_id"]
    assert started.repo_path == str(git_repo.resolve())
    assert started.settings.parallel.max_concurrency == 5
    assert [e.id for e in started.plan.epics] == ["db", "api"]
    # read-your-writes: with ?wait=true the run is already projected
    detail = (await gateway.get(f"/api/runs/{body['run_id']}")).json()
    assert detail["run"]["status"] == "running" and len(detail["tasks"]) == 4
    assert detail["ledger_position"] >= body["seq"]
    assert detail["projection_lag_ms"] >= 0  # one figure: how far the rows trail the log


async def test_cancel_appends_run_cancelled_once(gateway, bus, database_url):
    await publish_and_project(bus, database_url, run_events())
    res = await gateway.post("/api/runs/r1/cancel", params={"wait": "true"}, json={"reason": "wrong spec"})
    assert res.status_code == 202 and res.json()["status"] == "cancelling"
    [cancelled] = [e for e in await logged(bus) if isinstance(e, ev.RunCancelled)]
    assert (cancelled.run_id, cancelled.project_id, cancelled.reason) == ("r1", "p", "wrong spec")
    again = await gateway.post("/api/runs/r1/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert (await gateway.post("/api/runs/nope/cancel")).status_code == 404


async def test_a_conflicted_merge_can_be_retried_and_a_merged_one_cannot(gateway, bus, database_url):
    await publish_and_project(bus, database_url, run_events())
    res = await gateway.post("/api/runs/r1/tasks/b/merge")
    assert res.status_code == 202 and res.json()["status"] == "merge_requested"
    [requested] = [e for e in await logged(bus) if isinstance(e, ev.MergeRequested)]
    assert (requested.run_id, requested.task_id, requested.requested_by) == ("r1", "b", "api")
    merged = await gateway.post("/api/runs/r1/tasks/a/merge")
    assert merged.status_code == 409 and merged.json()["field"] == "task_id"
    running = await gateway.post("/api/runs/r1/tasks/c/merge")
    assert running.status_code == 409 and "running" in running.json()["detail"]


async def test_commands_need_the_token_when_one_is_set(bus, database_url, git_repo):
    async with running_gateway(bus, database_url) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as anonymous:
            body = {"plan": PLAN, "repo_path": str(git_repo)}
            assert (await anonymous.post("/api/runs", json=body)).status_code == 401
            assert await logged(bus) == []
            ok = await anonymous.post("/api/runs", json=body, headers=AUTH)
            assert ok.status_code == 201


async def test_a_session0_plan_runs_by_id_only_once_approved(gateway, bus, git_repo):
    await bus.publish(ev.PlanRequested(project_id="p", aggregate_id="pa1", spec="a todo app"), msg_id="pa1:req")
    await bus.publish(ev.PlanProduced(project_id="p", aggregate_id="pa1", plan=PlanDoc.of(PLAN), source="session0:sonnet",
                                      path="/x/plan.yaml"), msg_id="pa1:prod")
    read = (await gateway.get("/api/plans/pa1")).json()
    assert read["status"] == "produced" and read["plan"]["name"] == PLAN["name"] and read["path"] == "/x/plan.yaml"
    refused = await gateway.post("/api/runs", json={"plan_id": "pa1", "repo_path": str(git_repo)})
    assert refused.status_code == 409 and refused.json()["field"] == "plan_id"
    assert "POST /api/plans/pa1/approve" in refused.json()["detail"]
    both = await gateway.post("/api/runs", json={"plan_id": "pa1", "plan": PLAN, "repo_path": str(git_repo)})
    assert both.status_code == 422 and both.json()["field"] == "plan_id"
    assert not [e for e in await logged(bus) if isinstance(e, ev.RunStarted)]

    approved = await gateway.post("/api/plans/pa1/approve", json={"approved_by": "ada"})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["approved_by"] == "ada" and approved.json()["newly_approved"] is True
    again = (await gateway.post("/api/plans/pa1/approve")).json()
    assert again["newly_approved"] is False and again["approved_by"] == "ada"
    started = await gateway.post("/api/runs", json={"plan_id": "pa1", "repo_path": str(git_repo)})
    assert started.status_code == 201, started.text
    [run] = [e for e in await logged(bus) if isinstance(e, ev.RunStarted)]
    assert run.plan.name == PLAN["name"] and run.run_id == started.json()["run_id"]


async def test_unknown_and_rejected_plans_are_clear_errors(gateway, bus, git_repo):
    assert (await gateway.get("/api/plans/nope")).status_code == 404
    missing = await gateway.post("/api/plans/nope/approve")
    assert missing.status_code == 404 and missing.json()["field"] == "plan_id"
    assert (await gateway.post("/api/runs", json={"plan_id": "nope", "repo_path": str(git_repo)})).status_code == 404
    await bus.publish(ev.PlanRequested(project_id="p", aggregate_id="pr1", spec="?"), msg_id="pr1:req")
    await bus.publish(ev.PlanRejected(project_id="p", aggregate_id="pr1", errors=[ev.PlanIssue(message="a cycle a -> b -> a")]),
                      msg_id="pr1:rej")
    assert (await gateway.get("/api/plans/pr1")).json()["status"] == "rejected"
    refused = await gateway.post("/api/plans/pr1/approve")
    assert refused.status_code == 409 and "a cycle a -> b -> a" in refused.json()["detail"]
    assert not [e for e in await logged(bus) if isinstance(e, ev.PlanApproved)]
