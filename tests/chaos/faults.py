"""Putting a fault at a known point, and proving it is there: a process frozen or dead."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from shared import events as ev
from tests.support.processes import ServiceProcess, service_env
from tests.support.system import endpoint_for, start_system
from yokeflow.system import System


def state_of(proc: ServiceProcess) -> str:
    """The kernel's one-letter state of the process (T: stopped, Z/absent: dead)."""
    try:
        stat = Path(f"/proc/{proc.proc.pid}/stat").read_text()
    except FileNotFoundError:
        return "X"
    return stat.rsplit(")", 1)[1].split()[0]


def freeze(proc: ServiceProcess) -> None:
    os.kill(proc.proc.pid, signal.SIGSTOP)
    for _ in range(100):  # the signal is delivered asynchronously
        if state_of(proc) in ("T", "t"):
            return
        time.sleep(0.01)
    raise AssertionError(f"{proc.name} did not stop: state {state_of(proc)}")


def thaw(proc: ServiceProcess) -> None:
    os.kill(proc.proc.pid, signal.SIGCONT)


def executor_name(proc: ServiceProcess) -> str:
    return f"{socket.gethostname()}-{proc.proc.pid}"


async def until(predicate, *, tries: int = 600, every: float = 0.1, what: str = "condition"):
    """Poll an async or plain predicate until it holds (bounded: tries × every)."""
    for _ in range(tries):
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


async def redelivered(bus, consumer: str) -> int:
    info = await bus.js.consumer_info(bus.stream, consumer)
    return info.num_redelivered or 0


async def started_by(bus, run_id: str) -> list[ev.AgentStarted]:
    return [d.event async for d in bus.read([bus.type_filter("AgentStarted")]) if d.event.run_id == run_id]


class CrashPoint:
    """A service in a process of its own that dies at a test-only crash point (exit 17)."""

    def __init__(self, service: str, env: dict[str, str], crash_env: str, tmp_path: Path):
        self.service, self.env, self.tmp_path = service, env, tmp_path
        self.crashing = ServiceProcess(service, {**env, crash_env: "1"}, tmp_path).start()
        self.replacement: ServiceProcess | None = None

    async def crashed(self) -> None:
        """Until the process has died, and proof that it died at its crash point."""
        await until(lambda: self.crashing.proc.poll() is not None, what=f"the {self.service}'s crash point")
        assert self.crashing.proc.returncode == 17 and "crash point" in self.crashing.output()

    def replace(self) -> ServiceProcess:
        """The service started again, without its crash point."""
        self.replacement = ServiceProcess(self.service, self.env, self.tmp_path).start()
        return self.replacement


@contextlib.asynccontextmanager
async def crash_point(service: str, crash_env: str, *, nats_url: str, database_url: str, unique: str, tmp_path: Path,
                      cfg, **env: str):
    """Every other service in this process, `service` in its own with `crash_env` set, and a bus;
    all stopped on the way out."""
    endpoint = endpoint_for(nats_url, database_url, unique)
    system = await start_system(endpoint, cfg, services=tuple(s for s in System.SERVICES if s != service))
    fault = CrashPoint(service, service_env(nats_url, database_url, unique, **env), crash_env, tmp_path)
    bus = await endpoint.bus()
    try:
        yield fault, bus
    finally:
        for p in (fault.crashing, fault.replacement):
            if p:
                p.stop()
        await bus.close()
        await system.stop()
