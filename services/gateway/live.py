"""Live events for WebSocket clients, from JetStream itself: an ephemeral pull consumer per
connection reads the event stream from a sequence on, so every frame carries its stream
sequence and a client that resumes with `since=SEQ` gets exactly what it missed, then what
follows, with no gap and no duplicate. A slow client slows its own consumer (nothing is
dropped: the stream keeps the messages) and is told how far behind it is."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from shared.bus import Bus
from shared.events import decode, to_dict
from shared.subjects import Subjects

log = logging.getLogger("yokeflow.gateway.live")

BATCH = 64  # messages fetched at once per connection
BEHIND_AFTER = 1000  # a client with more than this many messages still to read is told it is behind


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
    return {"kind": "event", "type": event.type, "seq": msg.metadata.sequence.stream, "subject": msg.subject,
            "event_id": event.event_id, "project_id": event.project_id, "run_id": getattr(event, "run_id", "") or "",
            "aggregate": event.aggregate, "aggregate_id": event.aggregate_id, "occurred_at": event.occurred_at,
            "data": to_dict(event)}


def log_message(msg: Msg, subjects: Subjects) -> dict[str, Any] | None:
    try:
        data = json.loads(msg.data)
    except ValueError:
        return None
    parts = subjects.parse_log(msg.subject)
    if parts is None or not isinstance(data, dict):
        return None
    return {"kind": "log", "type": parts.kind, "log_seq": msg.metadata.sequence.stream, "subject": msg.subject,
            "project_id": parts.project, "run_id": str(data.get("run_id", "")),
            "task_id": str(data.get("task_id", "")), "data": data}


class StreamTail:
    """One stream's messages on `subject` from `start_seq` on, through an ephemeral pull consumer
    (no acks). If the server drops the consumer, it is made again from the next sequence."""

    def __init__(self, bus: Bus, stream: str, subject: str, start_seq: int):
        self.bus = bus
        self.stream = stream
        self.subject = subject
        self.next_seq = max(1, start_seq)
        self.name: str | None = None
        self.sub: Any = None

    async def _open(self) -> None:
        self.name, self.sub = await self.bus.open_tail(self.stream, self.subject, self.next_seq)

    async def fetch(self, timeout: float) -> tuple[list[Msg], int]:
        """The next messages (none after `timeout` seconds without any) and how many remain after them."""
        if self.sub is None:
            await self._open()
        msgs = await self.bus.fetch_tail(self.sub, batch=BATCH, timeout=timeout)
        if msgs is None:  # the consumer went away (server restart, inactivity): start again where we were
            await self.close()
            return [], 0
        if not msgs:
            return [], 0
        self.next_seq = msgs[-1].metadata.sequence.stream + 1
        return msgs, msgs[-1].metadata.num_pending

    async def close(self) -> None:
        sub, name, self.sub, self.name = self.sub, self.name, None, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if name is not None:
            await self.bus.close_tail(self.stream, name)
