"""Running a shell command for an agent in its jail (shared/sandbox.py): its own process group (so a
timeout or a cancellation kills every child, the sandbox with them), merged and capped output."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from shared.sandbox import Jail, kill_group

SHELL = shutil.which("bash") or "/bin/sh"


@dataclass
class CommandResult:
    exit_code: int | None  # None when killed before it exited
    output: str
    timed_out: bool = False
    cancelled: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


def read_capped(f: BinaryIO, cap: int) -> str:
    """The first and last halves of at most `cap` bytes of a file: errors usually sit at the end."""
    size = os.fstat(f.fileno()).st_size
    half = max(cap, 64) // 2
    f.seek(0)
    if size <= 2 * half:
        return f.read().decode("utf-8", "replace")
    head = f.read(half).decode("utf-8", "replace")
    f.seek(size - half)
    tail = f.read(half).decode("utf-8", "replace")
    return f"{head}\n… [{size - 2 * half} bytes of output omitted] …\n{tail}"


async def run_shell(command: str, *, cwd: Path, jail: Jail, timeout_s: float, output_cap: int,
                    on_start: Callable[[int], None] = lambda pgid: None,
                    on_end: Callable[[int], None] = lambda pgid: None) -> CommandResult:
    # Output goes to an unlinked file, not a pipe: a background child holding a pipe open would
    # keep the command "running" after the shell exited.
    with tempfile.TemporaryFile(prefix="yf-cmd-") as out:
        argv = await asyncio.to_thread(jail.argv, command, cwd)  # hands the worktree's new files over
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=jail.env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=jail.preexec())
        pgid = proc.pid  # start_new_session: the shell leads a new process group
        on_start(pgid)
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            timed_out = True
        finally:
            # Also on cancellation: the command's children end with it.
            kill_group(pgid)
            on_end(pgid)
        await proc.wait()
        return CommandResult(exit_code=None if timed_out else proc.returncode,
                             output=read_capped(out, output_cap), timed_out=timed_out)
