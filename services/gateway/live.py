"""Live events for WebSocket clients: a core NATS subscription per connection, filtered by
project and run, decoded into the JSON shape of GET /api/runs/{id}/events (seq is null: core
NATS does not carry the stream sequence; clients fill gaps from the events endpoint)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from shared.bus import Bus
from shared.events import decode, to_dict

log = logging.getLogger("yokeflow.gateway.live")

QUEUE_LIMIT = 2000  # a client that falls this far behind is told so and loses the oldest messages


@dataclass(frozen=True)
class LiveFilter:
    project: str = ""
    run: str = ""
    logs: bool = False

    def event_subject(self, bus: Bus) -> str:
        return bus.subjects.project_events(self.project) if self.project else bus.subjects.all_events

    def log_subject(self, bus: Bus) -> str:
        return bus.subjects.project_logs(self.project) if self.project else bus.subjects.all_logs

    def wants(self, project_id: str, run_id: str) -> bool:
        if self.project and project_id != self.project:
            return False
        return not self.run or run_id == self.run


def event_message(msg: Msg) -> dict[str, Any] | None:
    try:
        event = decode(msg.data)
    except Exception:  # a message of a newer schema or junk on the subject: not for this client
        return None
    return {"kind": "event", "type": event.type, "seq": None, "subject": msg.subject, "event_id": event.event_id,
            "project_id": event.project_id, "run_id": getattr(event, "run_id", "") or "",
            "aggregate": event.aggregate, "aggregate_id": event.aggregate_id, "occurred_at": event.occurred_at,
            "data": to_dict(event)}


def log_message(msg: Msg, prefix: str) -> dict[str, Any] | None:
    try:
        data = json.loads(msg.data)
    except ValueError:
        return None
    parts = msg.subject[len(prefix) + 1:].split(".")  # log.<project>.<run-task>.<kind>
    if len(parts) != 4 or not isinstance(data, dict):
        return None
    return {"kind": "log", "type": parts[3], "seq": None, "subject": msg.subject, "project_id": parts[1],
            "run_id": str(data.get("run_id", "")), "task_id": str(data.get("task_id", "")), "data": data}


class LiveFeed:
    """Messages for one client, queued by NATS callbacks and drained by the WebSocket sender."""

    def __init__(self, bus: Bus, flt: LiveFilter):
        self.bus = bus
        self.filter = flt
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.dropped = 0
        self.subs: list[Any] = []

    def _offer(self, message: dict[str, Any] | None) -> None:
        if message is None or not self.filter.wants(message["project_id"], message["run_id"]):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    async def start(self) -> "LiveFeed":
        async def on_event(msg: Msg) -> None:
            self._offer(event_message(msg))

        async def on_log(msg: Msg) -> None:
            self._offer(log_message(msg, self.bus.prefix))

        self.subs.append(await self.bus.subscribe_live(self.filter.event_subject(self.bus), on_event))
        if self.filter.logs:
            self.subs.append(await self.bus.subscribe_live(self.filter.log_subject(self.bus), on_log))
        # make sure the server has the interest before the client is told it is subscribed
        await self.bus.nc.flush()
        return self

    async def next(self) -> dict[str, Any]:
        message = await self.queue.get()
        if self.dropped:
            message = {**message, "dropped_before": self.dropped}
            self.dropped = 0
        return message

    async def close(self) -> None:
        for sub in self.subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the connection may already be closing
                log.debug("unsubscribe failed: %s", exc)
        self.subs.clear()
