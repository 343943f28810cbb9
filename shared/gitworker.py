"""A process of its own for the git work that costs the interpreter's time.

dulwich is Python: a worktree's checkout, a commit and a merge each hold the interpreter lock for
milliseconds, and every file they write gives it up and must win it back from the event loop.
In one process the two slow each other down (a loop a third busy made each git job take half as
long again, and every git job delays the loop's timers and deliveries); in a process of its own
each has a core. The worker runs one job at a time, in the order sent (the process's turns,
`shared.threads`, decide that order), and stays up for the next: the git layer is imported once
and its caches (objects, settings, a worktree's watch) live on between jobs.

A job is a module-level function whose arguments and result pickle (paths, names, small
records). Its exception comes back as itself, or as GitError when it does not pickle. A worker
that dies (killed, out of memory) fails the jobs it had with GitError, and the next job starts a
new one; the worker ends when the process that started it closes the pipe (or dies).

Run as `python -m shared.gitworker`: jobs on stdin, answers on the stdout it was given (the
worker's own prints go to stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import os
import pickle
import struct
import sys
from typing import Any, Callable, TypeVar

from shared.config import process_env
from shared.threads import PerLoop

T = TypeVar("T")
_LENGTH = struct.Struct("!I")
log = logging.getLogger("yokeflow.gitworker")


class GitWorker:
    """The parent's side: one worker process, started on first use (or by `start`)."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Future | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self) -> None:
        if self._proc is not None and self._proc.returncode is None and self._reader is not None \
                and not self._reader.done():
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._spawn())
        await asyncio.shield(self._starting)

    async def warm(self, *modules: str) -> None:
        """Start the worker and import `modules` there (the git layer and a service's jobs: a few
        hundred ms) before the service takes its first event, so that no job waits for them; a
        failure here is the first job's to report."""
        try:
            await self.run(_preload, modules)
        except Exception as exc:
            log.warning("git worker not ready yet (the first git job tries again): %s", exc)

    async def _spawn(self) -> None:
        env = dict(process_env())
        # the same modules as this process, however it was started (an installed package, PYTHONPATH=.)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shared.gitworker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, limit=2 ** 26,
            start_new_session=True)  # a Ctrl-C in the terminal is the parent's to handle; the worker ends with its pipe
        self._reader = asyncio.ensure_future(self._read(self._proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stdin is not None
        try:
            while True:
                head = await proc.stdout.readexactly(_LENGTH.size)
                job, ok, value = pickle.loads(await proc.stdout.readexactly(_LENGTH.unpack(head)[0]))
                waiter = self._pending.pop(job, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(value) if ok else waiter.set_exception(value)
        except asyncio.CancelledError:  # the event loop is closing: the worker ends with its pipe
            proc.stdin.close()
            self._fail_pending("the git worker's reader was stopped (its event loop is closing)")
            raise
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:  # an answer that does not unpickle: the worker's state is unknown
            log.exception("git worker: unreadable answer; starting a new worker for the next job")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        code = await proc.wait()
        self._fail_pending(f"the git worker process stopped (exit {code}) before the job finished; it is started "
                           f"again for the next one")

    def _fail_pending(self, why: str) -> None:
        """Every job sent and not answered fails with GitError: no caller waits for an answer that
        cannot come."""
        from shared.gitops.errors import GitError
        failed, self._pending = self._pending, {}
        for waiter in failed.values():
            if not waiter.done():
                waiter.set_exception(GitError(why))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in the worker; its result, or its exception raised here."""
        payload = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        await self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        job = next(self._ids)
        waiter = asyncio.get_running_loop().create_future()
        self._pending[job] = waiter
        try:
            proc.stdin.write(_LENGTH.pack(len(payload) + 8) + job.to_bytes(8, "big") + payload)
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(job, None)
            from shared.gitops.errors import GitError
            raise GitError(f"the git worker process is gone ({exc}); it is started again for the next job") from None
        return await waiter

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


git_worker = PerLoop(GitWorker)  # the running event loop's git worker


def _preload(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name)


def _answer(out, job: bytes, ok: bool, value: Any) -> None:
    try:
        data = pickle.dumps((int.from_bytes(job, "big"), ok, value), protocol=pickle.HIGHEST_PROTOCOL)
        if not ok:
            pickle.loads(data)  # an exception whose class cannot be made again from its arguments
    except Exception as exc:  # a result or an exception that does not pickle: said in one line
        from shared.gitops.errors import GitError
        data = pickle.dumps((int.from_bytes(job, "big"), False,
                             GitError(f"{type(value).__name__}: {value}" if not ok else
                                      f"the git job's result does not pickle: {exc}")))
    out.write(_LENGTH.pack(len(data)) + data)
    out.flush()


def main() -> None:
    """The worker's side: answer jobs until stdin closes."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt the answers
    logging.basicConfig(level=logging.WARNING, format="yokeflow git worker: %(levelname)s %(name)s: %(message)s")
    import shared.gitops  # noqa: F401  (imported before the first job)
    inp = sys.stdin.buffer
    while True:
        head = inp.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        body = inp.read(_LENGTH.unpack(head)[0])
        job, payload = body[:8], body[8:]
        try:
            fn, args, kwargs = pickle.loads(payload)
            value, ok = fn(*args, **kwargs), True
        except BaseException as exc:  # noqa: BLE001 (the job's failure is its caller's to handle)
            value, ok = exc, False
        try:
            _answer(out, job, ok, value)
        except OSError:  # the parent is gone (its pipe closed): nothing is waiting for the answer
            return


if __name__ == "__main__":
    main()
