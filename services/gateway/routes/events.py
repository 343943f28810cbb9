"""Live events over WebSocket: /api/events/ws?project=&run=&logs=true&since=SEQ streams them as JSON,
each event frame with its JetStream stream sequence; `since` resumes after a sequence (docs/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Awaitable, Callable

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from shared import readmodel
from shared.subjects import Subjects
from services.gateway.deps import NO_CONTROL_OR_EMPTY, SEQ_MAX
from services.gateway.live import LiveFilter, StreamTail, event_message, log_message

router = APIRouter(tags=["events"])

Send = Callable[[dict[str, Any]], Awaitable[None]]


@router.websocket("/api/events/ws")
async def events_ws(ws: WebSocket, project: str = Query(default="", max_length=64, pattern=NO_CONTROL_OR_EMPTY),
                    run: str = Query(default="", max_length=64, pattern=NO_CONTROL_OR_EMPTY), logs: bool = False,
                    since: int | None = Query(default=None, ge=0, le=SEQ_MAX)) -> None:
    state = ws.app.state  # the app-wide guard has checked Host, Origin and the token before this runs
    bus = state.bus
    if run and not project:
        found = await readmodel.get_run(state.database, run)
        project = found["project_id"] if found else ""
    flt = LiveFilter(project=project, run=run, logs=logs)
    position = await bus.stream_last_seq(bus.stream)
    start = since + 1 if since is not None else position + 1  # no `since`: from now on, with no gap
    tails = [StreamTail(bus, bus.stream, flt.event_subject(bus), start)]
    if logs:
        tails.append(StreamTail(bus, bus.log_stream, flt.log_subject(bus), await bus.stream_last_seq(bus.log_stream) + 1))
    await ws.accept()
    lock = asyncio.Lock()

    async def send(frame: dict[str, Any]) -> None:
        async with lock:  # two pumps share the socket
            await ws.send_json(frame)

    tasks: list[asyncio.Task] = []
    try:
        await send({"kind": "hello", "filter": {"project": project, "run": run, "logs": logs},
                    "since": start - 1, "stream_last_seq": position})
        tasks = [asyncio.create_task(_events(tails[0], flt, send, state.heartbeat_s, state.behind_after)),
                 asyncio.create_task(_drain(ws))]
        if logs:
            tasks.append(asyncio.create_task(_logs(tails[1], flt, send, state.heartbeat_s, bus.subjects)))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if not t.cancelled() and t.exception() and not isinstance(t.exception(), (WebSocketDisconnect, RuntimeError)):
                raise t.exception()
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, Exception):
                await t
        for tail in tails:
            await tail.close()


async def _events(tail: StreamTail, flt: LiveFilter, send: Send, heartbeat_s: float, behind_after: int) -> None:
    """Event frames in stream order; `caught_up` once the client has everything up to now, `behind`
    when more than `behind_after` messages wait for it, a `heartbeat` after `heartbeat_s` of quiet.
    Every control frame carries `seq`: the last stream sequence this client has been given or passed."""
    last = tail.next_seq - 1
    caught_up = behind = False
    while True:
        msgs, pending = await tail.fetch(heartbeat_s)
        if not msgs:
            if not caught_up:
                caught_up = True
                await send({"kind": "caught_up", "seq": last})
            await send({"kind": "heartbeat", "seq": last})
            continue
        for msg in msgs:
            last = msg.metadata.sequence.stream
            frame = event_message(msg)
            if frame is not None and flt.wants(frame["project_id"], frame["run_id"]):
                await send(frame)
        if pending > behind_after and not behind:
            behind, caught_up = True, False
            await send({"kind": "behind", "seq": last, "pending": pending})
        elif pending == 0 and not caught_up:
            behind, caught_up = False, True
            await send({"kind": "caught_up", "seq": last})


async def _logs(tail: StreamTail, flt: LiveFilter, send: Send, heartbeat_s: float, subjects: Subjects) -> None:
    while True:
        msgs, _ = await tail.fetch(heartbeat_s)
        for msg in msgs:
            frame = log_message(msg, subjects)
            if frame is not None and flt.wants(frame["project_id"], frame["run_id"]):
                await send(frame)


async def _drain(ws: WebSocket) -> None:
    """Read until the client leaves (clients send nothing the server needs)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
