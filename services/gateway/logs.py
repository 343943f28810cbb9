"""A task's agent log, paged from the YF_LOGS stream (tool calls, text, command output)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from nats.js import api as jsapi

from shared import events as ev
from shared.bus import Bus


def task_log_subject(bus: Bus, project_id: str, run_id: str, task_id: str) -> str:
    """The subjects Bus.log writes a task's telemetry to: <prefix>.log.<project>.<run-task>.<kind>."""
    key = ev.subject_token(ev.task_aggregate_id(run_id, task_id))
    return f"{bus.prefix}.log.{ev.subject_token(project_id)}.{key}.*"


async def read_task_log(bus: Bus, project_id: str, run_id: str, task_id: str, *, after: int,
                        limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Entries after stream sequence `after`, at most `limit`, and whether more follow."""
    cfg = jsapi.ConsumerConfig(
        deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1,
        ack_policy=jsapi.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
        filter_subject=task_log_subject(bus, project_id, run_id, task_id))
    info = await bus.js._jsm.add_consumer(bus.log_stream, config=cfg)
    sub = await bus.js.pull_subscribe_bind(consumer=info.name, stream=bus.log_stream)
    entries: list[dict[str, Any]] = []
    pending = info.num_pending
    try:
        while pending and len(entries) < limit:
            try:
                msgs = await sub.fetch(batch=min(pending, limit - len(entries)), timeout=2.0)
            except asyncio.TimeoutError:
                break
            for msg in msgs:
                meta = msg.metadata
                pending = meta.num_pending
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    data = {"text": msg.data.decode(errors="replace")}
                entries.append({"seq": meta.sequence.stream, "kind": msg.subject.rsplit(".", 1)[-1],
                                "time": meta.timestamp.isoformat() if meta.timestamp else None, "data": data})
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await bus.js._jsm.delete_consumer(bus.log_stream, info.name)
    return entries, pending > 0
