"""Running a shell command for an agent: its own process group (so a timeout or a
cancellation kills every child), merged and capped output, and no secrets in its environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

SECRET_NAMES = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"})
SECRET_PREFIXES = ("YOKEFLOW_",)
SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_KEY", "_API_KEY")
SHELL = shutil.which("bash") or "/bin/sh"


def is_secret(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_NAMES or upper.startswith(SECRET_PREFIXES) or upper.endswith(SECRET_SUFFIXES)


def scrubbed_env(inherited: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited environment without secrets, then `extra` (chosen by the executor) on top."""
    env = {k: v for k, v in inherited.items() if not is_secret(k)}
    env.update(extra or {})
    return env


@dataclass
class CommandResult:
    exit_code: int | None  # None when killed before it exited
    output: str
    timed_out: bool = False
    cancelled: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


class CappedOutput:
    """Keeps the first and last halves of at most `cap` bytes: errors usually sit at the end."""

    def __init__(self, cap: int):
        self.cap = max(cap, 64)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap // 2 - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            del self.tail[: max(0, len(self.tail) - self.cap // 2)]

    def text(self) -> str:
        omitted = self.total - len(self.head) - len(self.tail)
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        return head + tail if omitted <= 0 else f"{head}\n… [{omitted} bytes of output omitted] …\n{tail}"


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_shell(command: str, *, cwd: Path, env: dict[str, str], timeout_s: float, output_cap: int,
                    on_start: Callable[[int], None] = lambda pgid: None,
                    on_end: Callable[[int], None] = lambda pgid: None) -> CommandResult:
    proc = await asyncio.create_subprocess_exec(
        SHELL, "-c", command, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    pgid = proc.pid  # start_new_session: the shell leads a new process group
    on_start(pgid)
    output = CappedOutput(output_cap)

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            output.feed(chunk)

    reader = asyncio.create_task(pump())
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            timed_out = True
    except asyncio.CancelledError:
        reader.cancel()
        raise
    finally:
        # Also on cancellation: background children of the command end with it.
        kill_group(pgid)
        on_end(pgid)
    await proc.wait()
    try:
        await asyncio.wait_for(reader, 2.0)
    except asyncio.TimeoutError:
        reader.cancel()  # a child that left the group still holds the pipe
    exit_code = None if timed_out else proc.returncode
    return CommandResult(exit_code=exit_code, output=output.text(), timed_out=timed_out)
