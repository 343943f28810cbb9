"""Putting a fault at a known point, and proving it is there: a process frozen or dead."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

from shared import events as ev
from tests.support.processes import ServiceProcess


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
