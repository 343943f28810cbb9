"""The live WebSocket over a real socket: events published after connecting arrive as JSON with
their stream sequence, filtered by run; agent logs come along on request; a client that drops
and resumes with `since` ends with exactly the events of one that never dropped; a client far
behind is told; quiet connections get heartbeats."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from shared import events as ev
from tests.integration.test_gateway import AUTH, publish_and_project, run_events, running_gateway, task_event

pytestmark = pytest.mark.integration


async def receive(ws, timeout: float = 10.0, kinds: tuple[str, ...] = ("hello", "event", "log", "behind")) -> dict:
    """The next frame of one of `kinds` (heartbeats and catch-up markers are skipped unless asked for)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["kind"] in kinds:
            return frame


def ws_url(url: str, query: str = "") -> str:
    return url.replace("http", "ws") + "/api/events/ws" + query


async def test_live_events_arrive_filtered_by_run(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        async with connect(url.replace("http", "ws") + "/api/events/ws?project=p&run=r1", additional_headers=AUTH) as ws:
            hello = await receive(ws)
            assert hello["filter"] == {"project": "p", "run": "r1", "logs": False}
            assert hello["since"] == hello["stream_last_seq"] == await bus.last_seq()
            await bus.publish(task_event(ev.TaskReady, "x", run="r2"))  # another run: not for this client
            await bus.publish(ev.ProjectCreated(project_id="q", aggregate_id="q", name="q", repo_path="/q"))
            started = task_event(ev.AgentStarted, "a", run="r1", model="sonnet")
            await bus.publish(started)
            message = await receive(ws)
            assert message["kind"] == "event" and message["type"] == "AgentStarted"
            assert (message["run_id"], message["project_id"], message["event_id"]) == ("r1", "p", started.event_id)
            assert message["data"]["task_id"] == "a" and message["data"]["model"] == "sonnet"
            assert message["seq"] == await bus.last_seq()  # the JetStream stream sequence of the event
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


async def collect(ws, until_type: str, timeout: float = 20.0) -> list[dict]:
    out = []
    while True:
        frame = await receive(ws, timeout, kinds=("event",))
        out.append(frame)
        if frame["type"] == until_type:
            return out


async def test_a_client_that_resumes_with_since_misses_nothing_and_repeats_nothing(bus, database_url):
    steps = [task_event(ev.TaskReady, t, model="m") for t in "abcdefghij"]
    others = [task_event(ev.TaskReady, t, run="r2") for t in "xyz"]  # another run, interleaved
    done = task_event(ev.TaskCompleted, "j")
    async with running_gateway(bus, database_url, heartbeat_s=0.5) as url:
        async with connect(ws_url(url, "?project=p&run=r1"), additional_headers=AUTH) as steady:
            await receive(steady)
            dropper = await connect(ws_url(url, "?project=p&run=r1"), additional_headers=AUTH)
            await receive(dropper)
            for e in steps[:4]:
                await bus.publish(e)
            got = [await receive(dropper, kinds=("event",)) for _ in range(4)]
            await dropper.close()  # gone for a while: events go on meanwhile
            for e, o in zip(steps[4:], others):
                await bus.publish(e)
                await bus.publish(o)
            resumed = await connect(ws_url(url, f"?project=p&run=r1&since={got[-1]['seq']}"), additional_headers=AUTH)
            hello = await receive(resumed)
            assert hello["since"] == got[-1]["seq"]
            for e in steps[7:]:
                await bus.publish(e)
            await bus.publish(done)
            rest = await collect(resumed, "TaskCompleted")
            await resumed.close()
            everything = await collect(steady, "TaskCompleted")
    assert [f["event_id"] for f in got + rest] == [f["event_id"] for f in everything]
    assert [f["event_id"] for f in everything] == [e.event_id for e in steps + [done]]
    seqs = [f["seq"] for f in everything]
    assert seqs == sorted(set(seqs))


async def test_a_client_far_behind_is_told_and_a_quiet_one_gets_heartbeats(bus, database_url):
    for i in range(150):  # more than one fetch (64) of backlog
        await bus.publish(task_event(ev.TaskReady, f"t{i}"))
    last = await bus.last_seq()
    async with running_gateway(bus, database_url, heartbeat_s=0.3, behind_after=10) as url:
        async with connect(ws_url(url, "?since=0"), additional_headers=AUTH) as ws:
            assert (await receive(ws))["since"] == 0
            frames = []
            while not frames or frames[-1]["kind"] != "caught_up":
                frames.append(await receive(ws, kinds=("event", "behind", "caught_up")))
            behind = [f for f in frames if f["kind"] == "behind"]
            assert len(behind) == 1 and behind[0]["pending"] > 10  # told once, and nothing was dropped
            assert [f["seq"] for f in frames if f["kind"] == "event"] == list(range(1, last + 1))
            assert frames[-1]["seq"] == last
            beat = await receive(ws, 5, kinds=("heartbeat",))
            assert beat["seq"] == last
