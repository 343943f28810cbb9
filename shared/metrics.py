"""OpenTelemetry metrics every service records; exported when telemetry.setup finds a metrics
exporter (OTEL_METRICS_EXPORTER, or an OTLP endpoint). Instruments are made once here; until a
provider is set they are no-ops, after that they record (the API's proxy instruments)."""

from __future__ import annotations

import weakref
from datetime import datetime, timezone
from typing import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

_meter = metrics.get_meter("yokeflow")

COST = _meter.create_counter("yokeflow.cost", unit="USD", description="what model calls cost, by model")
AGENTS_IN_FLIGHT = _meter.create_up_down_counter("yokeflow.agents.in_flight", description="agents working now")
DISPATCH_LATENCY = _meter.create_histogram("yokeflow.dispatch.latency", unit="s",
                                           description="from its agent slot (AgentAdmitted) to its agent starting")
MERGE_DURATION = _meter.create_histogram("yokeflow.merge.duration", unit="s", description="one merge into a target")
PROJECTION_LAG = _meter.create_histogram("yokeflow.projection.lag", unit="s",
                                         description="from an event's time to its row in PostgreSQL")

_pending: dict[str, int] = {}
_task_sources: list[weakref.WeakMethod] = []


def record_pending(consumer: str, pending: int) -> None:
    """Messages the consumer has not been handed yet (consumer lag), as its last delivery said."""
    _pending[consumer] = pending


def observe_tasks(source: Callable[[], dict[str, int]]) -> None:
    """A bound method giving the active runs' task counts by status (the planner's fold); held
    weakly, so a planner that is gone stops counting."""
    _task_sources.append(weakref.WeakMethod(source))  # type: ignore[arg-type]


def _pending_now(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, {"consumer": c}) for c, n in list(_pending.items())]


def _tasks_now(options: CallbackOptions) -> Iterable[Observation]:
    totals: dict[str, int] = {}
    for ref in list(_task_sources):
        source = ref()
        if source is None:
            _task_sources.remove(ref)
            continue
        for status, n in source().items():
            totals[status] = totals.get(status, 0) + n
    return [Observation(n, {"status": s}) for s, n in totals.items()]


_meter.create_observable_gauge("yokeflow.consumer.pending", [_pending_now],
                               description="messages waiting for each service's durable consumer")
_meter.create_observable_gauge("yokeflow.tasks", [_tasks_now], description="tasks of active runs by status")


def seconds_since(iso: str) -> float:
    """Seconds from an event's occurred_at until now (0 for an unreadable time)."""
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - then).total_seconds())
