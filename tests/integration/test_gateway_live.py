"""The live WebSocket over a real socket: events published after connecting arrive as JSON,
filtered by run; agent logs come along on request; the token guards the handshake."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from shared import events as ev
from tests.integration.test_gateway import AUTH, publish_and_project, run_events, running_gateway, task_event

pytestmark = pytest.mark.integration


async def receive(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_live_events_arrive_filtered_by_run(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        async with connect(url.replace("http", "ws") + "/api/events/ws?project=p&run=r1", additional_headers=AUTH) as ws:
            hello = await receive(ws)
            assert hello == {"kind": "hello", "filter": {"project": "p", "run": "r1", "logs": False}}
            await bus.publish(task_event(ev.TaskReady, "x", run="r2"))  # another run: not for this client
            await bus.publish(ev.ProjectCreated(project_id="q", aggregate_id="q", name="q", repo_path="/q"))
            started = task_event(ev.AgentStarted, "a", run="r1", model="sonnet")
            await bus.publish(started)
            message = await receive(ws)
            assert message["kind"] == "event" and message["type"] == "AgentStarted"
            assert (message["run_id"], message["project_id"], message["event_id"]) == ("r1", "p", started.event_id)
            assert message["data"]["task_id"] == "a" and message["data"]["model"] == "sonnet"
            assert message["seq"] is None  # core NATS carries no stream sequence; GET .../events has it
            assert message["subject"] == started.subject(bus.prefix)


async def test_run_filter_alone_finds_the_project_and_logs_come_on_request(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        await publish_and_project(bus, database_url, run_events()[:2])
        async with connect(url.replace("http", "ws") + "/api/events/ws?run=r1&logs=true", additional_headers=AUTH) as ws:
            assert (await receive(ws))["filter"] == {"project": "p", "run": "r1", "logs": True}
            await bus.log("p", ev.task_aggregate_id("r2", "a"), "text", {"run_id": "r2", "task_id": "a", "text": "no"})
            await bus.log("p", ev.task_aggregate_id("r1", "a"), "tool_call",
                          {"run_id": "r1", "task_id": "a", "name": "write_file"})
            message = await receive(ws)
            assert message["kind"] == "log" and message["type"] == "tool_call"
            assert (message["run_id"], message["task_id"], message["data"]["name"]) == ("r1", "a", "write_file")


async def test_stopping_the_gateway_closes_open_sockets(bus, database_url):
    from websockets.exceptions import ConnectionClosed

    async with running_gateway(bus, database_url) as url:
        ws = await connect(url.replace("http", "ws") + "/api/events/ws", additional_headers=AUTH)
        assert (await receive(ws))["kind"] == "hello"
    # the gateway has stopped (the context waited for it): the client is told, not left hanging
    with pytest.raises(ConnectionClosed):
        await receive(ws)
