"""Running the whole system in-process against the session's real NATS and PostgreSQL,
isolated by a unique subject prefix, stream names and database."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any, AsyncIterator

from shared import events as ev
from shared.config import Config, parse_config
from yokeflow.system import Endpoint, System


def endpoint_for(nats_url: str, database_url: str, unique: str) -> Endpoint:
    return Endpoint(nats_url, database_url, "embedded",
                    bus_options={"prefix": f"t{unique}", "stream": f"EV_{unique}", "log_stream": f"LOG_{unique}"})


def write_transcripts(folder: Path, scripts: dict[str, list[dict]]) -> Path:
    """Replay transcripts from {task_id: [turn, ...]} (turns as in tests.support.fake_anthropic)."""
    folder.mkdir(parents=True, exist_ok=True)
    for task_id, turns in scripts.items():
        (folder / f"{task_id}.json").write_text(json.dumps({"model": "claude-sonnet-4-5", "turns": turns}))
    return folder


def config(**sections: dict[str, Any]) -> Config:
    """Settings for a test's system: every service in this process unless the test says otherwise (the
    ledger's own process, the default of `up` and `run`, costs a start of Python per system; its tests
    ask for it)."""
    runtime = {"ledger_process": False, **sections.get("runtime", {})}
    return parse_config({**sections, "runtime": runtime})


async def events_of(bus, run_id: str) -> list[ev.Event]:
    return [d.event async for d in bus.read() if getattr(d.event, "run_id", None) == run_id]


async def next_event(bus, predicate, timeout: float = 60.0) -> ev.Event:
    """The first event in the log (from its start, then live) for which `predicate` holds."""
    async def watch() -> ev.Event:
        async for d in bus.read(stop_at_end=False):
            if predicate(d.event):
                return d.event
        raise AssertionError("log ended")

    return await asyncio.wait_for(watch(), timeout)


async def wait_for_end(bus, run_id: str, timeout: float = 120.0) -> ev.Event:
    return await next_event(bus, lambda e: getattr(e, "run_id", None) == run_id and isinstance(
        e, (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)), timeout)


async def start_system(endpoint: Endpoint, cfg: Config, **kwargs: Any) -> System:
    return await System(endpoint, cfg, **kwargs).start()


@contextlib.asynccontextmanager
async def running_system(nats_url: str, database_url: str, unique: str, cfg: Config,
                         **kwargs: Any) -> AsyncIterator[tuple[System, Any]]:
    """Every service in-process on the test's isolated streams, and a bus to watch them; both
    closed on the way out."""
    system = await start_system(endpoint_for(nats_url, database_url, unique), cfg, **kwargs)
    bus = await system.endpoint.bus()
    try:
        yield system, bus
    finally:
        await bus.close()
        await system.stop()
