"""The gateway over real HTTP: reads of runs projected by the ledger from a real JetStream log,
commands that land on the bus, validation errors that name the field, and the API token."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import httpx
import pytest

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import Config, RunSettings
from shared.db import Database
from services.gateway.app import create_app
from services.gateway.auth import make_doors
from services.gateway.deps import GatewayConfigError
from services.gateway.service import serve
from services.ledger.service import Ledger

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLAN = {"name": "shop", "epics": [
    {"id": "db", "name": "Database", "tasks": [
        {"id": "a", "title": "Schema", "domain": "database", "estimate_minutes": 4},
        {"id": "b", "title": "Seed data", "depends_on": ["a"], "estimate_minutes": 2}]},
    {"id": "api", "name": "API", "tasks": [
        {"id": "c", "title": "Orders endpoint", "depends_on": ["a"], "domain": "api", "estimate_minutes": 6},
        {"id": "d", "title": "Payments", "depends_on": ["c"], "estimate_minutes": 3}]},
]}


def task_event(cls, task: str, run: str = "r1", project: str = "p", **kw) -> ev.Event:
    return cls(project_id=project, aggregate_id=ev.task_aggregate_id(run, task), run_id=run, task_id=task, **kw)


def run_events(run: str = "r1", project: str = "p") -> list[ev.Event]:
    """A run part-way through: a merged, a conflicted, a running and a pending task."""
    t = lambda cls, task, **kw: task_event(cls, task, run, project, **kw)
    return [
        ev.ProjectCreated(project_id=project, aggregate_id=project, name="shop", repo_path="/srv/shop"),
        ev.RunStarted(project_id=project, aggregate_id=run, run_id=run, plan=PlanDoc.of(PLAN), repo_path="/srv/shop",
                      settings=RunSettings.of({"parallel": {"max_concurrency": 2}})),
        ev.BatchesComputed(project_id=project, aggregate_id=run, run_id=run, batches=[["a"], ["b", "c"], ["d"]]),
        t(ev.TaskReady, "a", model="sonnet", branch="task/a-schema"),
        t(ev.AgentStarted, "a", model="sonnet", occurred_at="2030-01-01T10:00:00+00:00"),
        t(ev.CostRecorded, "a", model="sonnet", input_tokens=1000, output_tokens=200, cost_usd=0.25),
        t(ev.AgentFinished, "a", outcome="success", commit="c1", summary="schema made",
          occurred_at="2030-01-01T10:02:00+00:00"),
        t(ev.TaskCompleted, "a", commit="c1"),
        ev.BranchMerged(project_id=project, aggregate_id=ev.task_aggregate_id(run, "a"), run_id=run, task_id="a",
                        branch="task/a-schema", commit="m1"),
        t(ev.TaskReady, "b", model="haiku"),
        t(ev.AgentStarted, "b", model="haiku", occurred_at="2030-01-01T10:02:00+00:00"),
        t(ev.AgentFinished, "b", outcome="success", commit="c2", occurred_at="2030-01-01T10:06:00+00:00"),
        t(ev.TaskCompleted, "b", commit="c2"),
        ev.MergeConflicted(project_id=project, aggregate_id=ev.task_aggregate_id(run, "b"), run_id=run, task_id="b",
                           branch="task/b-seed", conflicts=[{"path": "seed.sql"}], reason="seed.sql changed on main"),
        t(ev.TaskReady, "c", model="sonnet"),
        t(ev.AgentStarted, "c", model="sonnet"),
        t(ev.CostRecorded, "c", model="sonnet", input_tokens=500, output_tokens=100, cache_read_tokens=50,
          cost_usd=0.1),
    ]


@contextlib.asynccontextmanager
async def running_gateway(bus, database_url: str, api_token: str | None = TOKEN,
                          no_auth: bool = False, **app_options) -> AsyncIterator[str]:
    """The ledger and the gateway on a free port, as `yokeflow up` runs them; yields the base URL."""
    database = Database(database_url)
    await database.migrate()
    stop, ready, bound = asyncio.Event(), asyncio.Event(), []
    ledger = asyncio.create_task(bus.consume("ledger", [bus.events_subject], Ledger(bus, database).handle, stop=stop))
    gateway = asyncio.create_task(serve(bus, Config(), stop, database_url=database_url, port=0, ready=ready,
                                        bound=bound, api_token=api_token, no_auth=no_auth, **app_options))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield f"http://127.0.0.1:{bound[0]}"
    finally:
        stop.set()
        await asyncio.gather(ledger, gateway)
        await database.dispose()


def client(url: str, timeout: float = 20) -> httpx.AsyncClient:
    """An HTTP client that authenticates as `yokeflow` clients do: the bearer token."""
    return httpx.AsyncClient(base_url=url, headers=AUTH, timeout=timeout)


async def publish_and_project(bus, database_url: str, events: list[ev.Event]) -> int:
    for e in events:
        await bus.publish(e)
    last = await bus.last_seq()
    database = Database(database_url)
    await database.wait_for("ledger", last, timeout=20)
    await database.dispose()
    return last


@pytest.fixture
async def gateway(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        async with client(url) as c:
            yield c


async def test_runs_are_read_with_totals_after_the_ledger_projects_them(gateway, bus, database_url):
    await publish_and_project(bus, database_url, run_events())

    projects = (await gateway.get("/api/projects")).json()["projects"]
    assert [(p["id"], p["name"], p["runs"]) for p in projects] == [("p", "shop", 1)]
    assert [r["id"] for r in (await gateway.get("/api/projects/p")).json()["runs"]] == ["r1"]
    [listed] = (await gateway.get("/api/runs", params={"project": "p"})).json()["runs"]
    assert listed["tasks"] == {"total": 4, "by_state": {"merged": 1, "conflict": 1, "running": 1, "pending": 1}}
    assert (await gateway.get("/api/runs", params={"project": "other"})).json()["runs"] == []

    detail = (await gateway.get("/api/runs/r1")).json()
    assert detail["run"]["status"] == "running" and detail["run"]["plan_name"] == "shop"
    assert [e["id"] for e in detail["epics"]] == ["db", "api"]
    assert {t["id"]: (t["state"], t["batch"]) for t in detail["tasks"]} == {
        "a": ("merged", 0), "b": ("conflict", 1), "c": ("running", 1), "d": ("pending", 2)}
    assert [(b["batch"], b["finished"], b["total"]) for b in detail["batches"]] == [(0, 1, 1), (1, 1, 2), (2, 0, 1)]
    totals = detail["totals"]
    assert totals["cost_usd"] == pytest.approx(0.35)
    assert totals["tokens"] == {"input_tokens": 1500, "output_tokens": 300, "cache_read_tokens": 50,
                                "cache_write_tokens": 0, "total": 1850}
    assert [(a["task_id"], a["model"]) for a in totals["running"]] == [("c", "sonnet")]
    # a took 2 min, b took 4 min: 3 min per task × 2 tasks left (c, d) / 2 slots = 180 s
    assert totals["eta"]["basis"] == "finished_tasks"
    assert totals["eta"]["seconds"] == pytest.approx(180.0)

    events = (await gateway.get("/api/runs/r1/events", params={"after": 3})).json()
    assert events["events"][0]["seq"] == 4 and events["events"][0]["type"] == "TaskReady"
    assert events["last_seq"] == 17 and {e["run_id"] for e in events["events"]} == {"r1"}
    tail = (await gateway.get("/api/runs/r1/events", params={"tail": 2})).json()["events"]
    assert [e["seq"] for e in tail] == [16, 17]

    task = (await gateway.get("/api/runs/r1/tasks/a")).json()
    assert task["task"]["state"] == "merged" and task["task"]["merge_commit"] == "m1"
    assert [(x["attempt"], x["outcome"], x["recorded_cost_usd"]) for x in task["attempts"]] == [(1, "success", 0.25)]
    assert [m["status"] for m in task["merges"]] == ["merged"]
    assert task["totals"]["cost_usd"] == pytest.approx(0.25)
    conflicted = (await gateway.get("/api/runs/r1/tasks/b")).json()
    assert [c["path"] for c in conflicted["merges"][0]["conflicts"]] == ["seed.sql"]

    missing = await gateway.get("/api/runs/nope")
    assert missing.status_code == 404 and missing.json()["field"] == "run_id"
    missing_task = await gateway.get("/api/runs/r1/tasks/zz")
    assert missing_task.status_code == 404 and missing_task.json()["field"] == "task_id"
    assert (await gateway.get("/api/projects/nope/expertise")).status_code == 404


async def test_eta_uses_plan_estimates_before_any_task_finished(gateway, bus, database_url):
    await publish_and_project(bus, database_url, run_events()[:3])
    eta = (await gateway.get("/api/runs/r1")).json()["totals"]["eta"]
    # (4 + 2 + 6 + 3) minutes of estimates over 2 slots
    assert eta["basis"] == "plan_estimates" and eta["seconds"] == pytest.approx(15 * 60 / 2)


async def test_expertise_lists_latest_content_and_versions(gateway, bus, database_url):
    await publish_and_project(bus, database_url, run_events()[:1] + [
        ev.ExpertiseUpdated(project_id="p", aggregate_id=f"p-{d}", domain=d, version=v, lines=v,
                            content=f"{d} v{v}") for d, v in (("api", 1), ("ui", 1), ("api", 2), ("api", 3))])
    api, ui = (await gateway.get("/api/projects/p/expertise")).json()["domains"]
    assert api["content"] == "api v3" and [v["version"] for v in api["versions"]] == [1, 2, 3]
    assert api["version"] == 3 and api["lines"] == 3
    assert ui["content"] == "ui v1" and [v["version"] for v in ui["versions"]] == [1]


async def test_health_reports_both_servers(gateway):
    body = (await gateway.get("/api/health")).json()
    assert body["status"] == "ok" and body["nats"] is True and body["database"] is True


@pytest.mark.parametrize("token", ["changeme", "short-token"])
async def test_guessable_tokens_are_refused_at_start(bus, database_url, token):
    with pytest.raises(GatewayConfigError, match="YOKEFLOW_API_TOKEN"):
        make_doors(token)
    with pytest.raises(GatewayConfigError, match="at least 16|placeholder"):
        await serve(bus, Config(), asyncio.Event(), database_url=database_url, port=0, api_token=token)


async def test_an_unreachable_database_is_a_503_that_says_so(bus):
    database = Database("postgresql://postgres@127.0.0.1:9/absent")  # nothing listens on the discard port
    app = create_app(bus, database, Config(), doors=make_doors(TOKEN))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                 headers=AUTH) as c:
        res = await c.get("/api/runs")
        assert res.status_code == 503 and "PostgreSQL" in res.json()["detail"]
        health = await c.get("/api/health")
        assert health.status_code == 503 and health.json()["database"] is False
    await database.dispose()
