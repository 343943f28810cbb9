"""Inter-process locks on a repository: our own (flock), and git's `<file>.lock` files, which a
writer killed mid-write leaves behind."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

from dulwich.file import FileLocked

T = TypeVar("T")
REF_LOCK_STALE_S = 10.0     # a ref's lock is held for a moment: older means its writer died
OBJECT_LOCK_STALE_S = 60.0  # a loose object's lock is held while it is written, large blobs included


class LockFile:
    """git's `<file>.lock`: created with O_EXCL (FileLocked while someone else holds it), written, and
    renamed over the file to commit; removed if not committed (`abort()`, or on leaving a `with`)."""

    def __init__(self, path: str | bytes, mode: int = 0o644):
        self.path = path
        self.lock = path + (b".lock" if isinstance(path, bytes) else ".lock")
        try:
            self.fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            raise FileLocked(os.fsdecode(path), os.fsdecode(self.lock)) from None
        self.held = True  # the lock file is ours until renamed or removed

    def commit(self, data: bytes, *, fsync: bool = False) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            if fsync:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1
        os.replace(self.lock, self.path)
        self.held = False

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.held:
            self.held = False
            try:
                os.unlink(self.lock)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "LockFile":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def retry_locked(action: Callable[[], T], *, stale_after_s: float, wait_s: float = 15.0,
                 satisfied: Callable[[str | bytes], T] | None = None) -> T:
    """Run a dulwich write that takes git's `<file>.lock`. While another writer holds the lock,
    wait; a lock older than `stale_after_s` was left by a writer that died, so remove it and go
    on (git would stop there until a person removed it). `satisfied(path)` may end the wait early
    with a result (e.g. the other writer wrote the very object we wanted)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return action()
        except FileLocked as exc:
            target, lock_path = exc.args[0], exc.args[1]
        if satisfied is not None and os.path.exists(target):
            return satisfied(target)
        try:
            if time.time() - os.stat(lock_path).st_mtime > stale_after_s:
                os.unlink(lock_path)
                continue
        except FileNotFoundError:
            continue  # the other writer just finished or gave up: try again
        if time.monotonic() > deadline:
            raise OSError(f"{os.fsdecode(lock_path)} has been held for {wait_s:g}s by another writer; if no git "
                          "process is running on this repository, remove the file") from None
        time.sleep(0.005)


def ref_update(action: Callable[[], T]) -> T:
    """A ref change (refwrite's set_ref, add_ref) that outlives a writer killed while it held the ref's lock."""
    return retry_locked(action, stale_after_s=REF_LOCK_STALE_S)
