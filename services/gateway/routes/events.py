"""Live events over WebSocket: /api/events/ws?project=&run=&logs=true streams them as JSON."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from shared import readmodel
from services.gateway.live import LiveFeed, LiveFilter

router = APIRouter(tags=["events"])


@router.websocket("/api/events/ws")
async def events_ws(ws: WebSocket, project: str = "", run: str = "", logs: bool = False) -> None:
    state = ws.app.state  # the app-wide guard has checked Host, Origin and the token before this runs
    if run and not project:
        found = await readmodel.get_run(state.database, run)
        project = found["project_id"] if found else ""
    feed = await LiveFeed(state.bus, LiveFilter(project=project, run=run, logs=logs)).start()
    await ws.accept()
    try:
        await ws.send_json({"kind": "hello", "filter": {"project": project, "run": run, "logs": logs}})
        sender = asyncio.create_task(_send_all(ws, feed))
        receiver = asyncio.create_task(_drain(ws))
        done, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await t
    except WebSocketDisconnect:
        pass
    finally:
        await feed.close()


async def _send_all(ws: WebSocket, feed: LiveFeed) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.send_json(await feed.next())


async def _drain(ws: WebSocket) -> None:
    """Read until the client leaves (clients send nothing the server needs)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
