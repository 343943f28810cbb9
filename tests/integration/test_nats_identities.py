"""The embedded NATS: no entry without credentials, and each identity publishes only its own
event types (tested against the real server)."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path

import nats
import pytest

from shared import events as ev
from shared import identities
from shared.bus import Bus, BusError
from shared.commands import start_run
from shared.events import encode, task_aggregate_id
from shared.infra import nats_server_config
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.integration


def options(bus: Bus) -> dict:
    return {"prefix": bus.prefix, "stream": bus.stream, "log_stream": bus.log_stream}


def forged_ready(repo, command: str, run_id: str = "r-forged", project_id: str = "p") -> ev.TaskReady:
    return ev.TaskReady(project_id=project_id, aggregate_id=task_aggregate_id(run_id, "evil"), run_id=run_id,
                        task_id="evil", title="evil", tests=[command], provider="sleep:10", repo_path=str(repo))


async def test_a_client_without_credentials_cannot_connect(nats_server):
    with pytest.raises(nats.errors.Error, match="(?i)authorization violation"):
        await nats.connect(nats_server.url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0)
    with pytest.raises(BusError, match="refused the credentials"):
        await Bus.connect(nats_server.url.replace("nats://", "nats://planner:wrong-password@"))
    for path in (nats_server.secrets_path, nats_server.config_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_the_executor_cannot_publish_the_mergers_events(nats_server, bus):
    executor = await Bus.connect(nats_server.url, name="yokeflow-executor", **options(bus))
    try:
        merged = ev.BranchMerged(project_id="p", aggregate_id="m1", run_id="r", task_id="1", branch="task/1")
        with pytest.raises(nats.errors.TimeoutError):  # the server drops it: no ack ever comes
            await executor.publish(merged, timeout=2)
        ready = ev.TaskReady(project_id="p", aggregate_id=task_aggregate_id("r", "1"), run_id="r", task_id="1")
        with pytest.raises(nats.errors.TimeoutError):
            await executor.publish(ready, timeout=2)
        await executor.publish(ev.AgentStarted(project_id="p", aggregate_id=task_aggregate_id("r", "1"),
                                               run_id="r", task_id="1"))
    finally:
        await executor.close()
    assert [d.event.type for d in [d async for d in bus.read()]] == ["AgentStarted"]


async def test_a_forged_event_on_a_subject_its_publisher_may_use_is_ignored_and_reported(
        nats_server, bus, git_repo, caplog):
    executor = await Bus.connect(nats_server.url, name="yokeflow-executor", **options(bus))
    forged = forged_ready(git_repo, "touch pwned")
    try:  # a TaskReady payload on an AgentStarted subject, which the executor may publish
        subject = f"{bus.prefix}.evt.p.task.{forged.aggregate_id}.AgentStarted"
        await executor.js.publish(subject, encode(forged))
    finally:
        await executor.close()
    genuine = ev.RunCancelled(project_id="p", aggregate_id="r", run_id="r")
    await bus.publish(genuine)

    seen: list[str] = []
    stop = asyncio.Event()

    async def handler(d):
        seen.append(d.event.type)
        stop.set()

    with caplog.at_level(logging.ERROR, logger="yokeflow.bus"):
        await asyncio.wait_for(bus.consume("acts", [bus.events_subject], handler, stop=stop), 30)
        replayed = [d.event.type async for d in bus.read()]
    assert seen == ["RunCancelled"] and replayed == ["RunCancelled"]
    assert "forged" in caplog.text and "TaskReady" in caplog.text and subject in caplog.text


async def test_a_forged_task_ready_runs_nothing(nats_server, database_url, unique, git_repo):
    cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10", "max_fix_rounds": 0})
    async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
        plan = {"name": "ok", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "a", "title": "A"}]}]}
        started = await start_run(bus, plan, git_repo, cfg)
        # The merger may publish BranchMerged: a TaskReady payload on such a subject, in the live run.
        merger = await Bus.connect(nats_server.url, name="yokeflow-merger", **system.endpoint.bus_options)
        try:
            forged = forged_ready(git_repo, "touch pwned", started.run_id, started.project_id)
            await merger.js.publish(f"{bus.prefix}.evt.{forged.project_id}.merge.{forged.aggregate_id}.BranchMerged",
                                    encode(forged))
            with pytest.raises(nats.errors.TimeoutError):  # and on its own subject it is refused outright
                await merger.publish(forged, timeout=2)
        finally:
            await merger.close()
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    assert not [e for e in events if getattr(e, "task_id", "") == "evil"]
    assert not (git_repo / "pwned").exists() and not list(git_repo.rglob("pwned"))


def test_the_server_configuration_is_the_table():
    conf = json.loads(nats_server_config(Path("/x"), {i: "pw" for i in identities.IDENTITIES}))
    users = {u["user"]: u["permissions"]["publish"] for u in conf["authorization"]["users"]}
    assert set(users) == set(identities.IDENTITIES)
    assert "*.evt.*.task.*.TaskReady" in users["planner"]["allow"]
    assert [who for who, p in users.items() if "*.evt.*.task.*.TaskReady" in p["allow"]] == ["planner"]
    assert [who for who, p in users.items() if "*.evt.*.merge.*.BranchMerged" in p["allow"]] == ["merger"]
    assert [who for who, p in users.items() if "*.log.>" in p["allow"]] == ["executor"]
    assert users["admin"]["allow"] == [">"]
    for who in identities.SERVICE_IDENTITIES:
        assert "$JS.API.STREAM.DELETE.>" in users[who]["deny"]
    owned = [t for types in identities.PUBLISHES.values() for t in types]
    assert {t for t in ev.EVENT_TYPES.values() if t not in owned} == set()  # every event type has a publisher
