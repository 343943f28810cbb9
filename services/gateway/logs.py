"""A task's agent log, paged from the YF_LOGS stream (tool calls, text, command output)."""

from __future__ import annotations

from typing import Any

from shared import events as ev
from shared.bus import Bus


def task_log_subject(bus: Bus, project_id: str, run_id: str, task_id: str) -> str:
    """The subjects Bus.log writes a task's telemetry to: <prefix>.log.<project>.<run-task>.<kind>."""
    return bus.log_subject(project_id, ev.task_aggregate_id(run_id, task_id))


async def read_task_log(bus: Bus, project_id: str, run_id: str, task_id: str, *, after: int,
                        limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Entries after stream sequence `after`, at most `limit`, and whether more follow."""
    return await bus.log_page(task_log_subject(bus, project_id, run_id, task_id), after=after, limit=limit)
