"""A plan travels whole inside `RunStarted` (and a task's text inside `TaskReady`): one NATS
message each. A plan larger than the server's max payload is refused up front, naming the limit."""

from __future__ import annotations

import msgspec

from shared.plan.doc import PlanDoc
from shared.plan.model import Plan, PlanProblem

NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default max_payload (the embedded server's too)
ENVELOPE_BYTES = 16 * 1024  # the event's envelope and the run's settings, generously


def payload_problems(plan: Plan, max_payload: int = NATS_DEFAULT_MAX_PAYLOAD) -> list[PlanProblem]:
    size = len(msgspec.json.encode(PlanDoc.of(plan))) + ENVELOPE_BYTES  # as RunStarted carries it
    if size <= max_payload:
        return []
    tasks = sum(len(e.tasks) for e in plan.epics)
    biggest = max((t for e in plan.epics for t in e.tasks), key=lambda t: len(t.description), default=None)
    hint = (f"; the longest description is task {biggest.id}'s ({len(biggest.description):,} characters)"
            if biggest is not None and len(biggest.description) > max_payload // 4 else "")
    return [PlanProblem("too_large", [], (
        f"the plan is {size:,} bytes as an event ({tasks:,} tasks), over the NATS max payload of {max_payload:,} "
        f"bytes{hint}: split it into smaller plans, shorten descriptions, or raise max_payload on the NATS server"))]
