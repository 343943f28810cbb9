"""A service started before its NATS server waits for it (as it does for a server that goes
away later) instead of exiting, and what it says meanwhile names the server without its password."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from shared import events as ev
from shared.commands import start_run
from shared.infra import EmbeddedNats
from tests.support.processes import ServiceProcess, as_identity, service_env
from tests.support.system import config, endpoint_for, next_event

pytestmark = pytest.mark.e2e

PLAN = {"name": "wait", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "t", "title": "T"}]}]}


async def test_a_service_started_before_its_server_waits_for_it_and_keeps_its_password(
        tmp_path, database_url, unique, git_repo):
    nats = EmbeddedNats(tmp_path / "nats").start()
    nats.stop()  # its port and credentials exist; nothing listens yet
    planner = ServiceProcess("planner", service_env(nats.url, database_url, unique), tmp_path).start()
    try:
        await asyncio.sleep(2.5)  # several tries fail meanwhile
        assert planner.proc.poll() is None, planner.output()  # still there, waiting
        said = planner.output()
        assert "cannot reach NATS" in said and "trying again" in said
        password = urlsplit(as_identity(nats.url, "planner")).password
        assert password and password not in said
        nats.start()
        bus = await endpoint_for(nats.url, database_url, unique).bus()
        try:
            started = await start_run(bus, PLAN, git_repo, config(parallel={"strategy": "by_task"}))
            ready = await next_event(bus, lambda e: isinstance(e, ev.TaskReady) and e.run_id == started.run_id, 60)
            assert ready.task_id == "t"  # the planner connected once the server came up, and acts
        finally:
            await bus.close()
    finally:
        planner.stop()
        nats.stop()
