"""Which files in a checkout may have changed since a moment: Linux inotify on the directories
that hold tracked files (what git's fsmonitor gets from a watcher daemon), so a long-running
merger need not lstat every tracked file before each merge. Not available elsewhere (None)."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
import threading
from dataclasses import dataclass, field

_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000
_IN_MODIFY, _IN_ATTRIB, _IN_MOVED_FROM, _IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
_IN_CREATE, _IN_DELETE, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR, _IN_DONT_FOLLOW, _IN_ISDIR = 0x4000, 0x8000, 0x1000000, 0x2000000, 0x40000000
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF
         | _IN_MOVE_SELF | _IN_ONLYDIR | _IN_DONT_FOLLOW)
_EVENT = struct.Struct("iIII")

_libc = None


def _inotify():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        # the process's own symbols, libc's among them: find_library runs `ldconfig -p` (~3 ms, on
        # the first worktree job of every process)
        lib = ctypes.CDLL(None, use_errno=True)
        _libc = lib if hasattr(lib, "inotify_init1") else False
    return _libc or None


@dataclass
class Changes:
    """What happened since the last drain: file paths, directory paths (everything under them may
    have changed), and whether the kernel dropped events (then nothing can be trusted)."""
    paths: set[bytes] = field(default_factory=set)
    directories: set[bytes] = field(default_factory=set)
    overflow: bool = False


class _Hub:
    """One inotify instance for every checkout this process watches: the kernel limits instances per
    user (fs.inotify.max_user_instances, 128 by default) far more tightly than watches, and a run of
    a hundred epics keeps a hundred worktrees. Events are read from it by whichever checkout drains
    first and kept for each watch they concern."""

    def __init__(self, lib) -> None:
        fd = lib.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd, self.pid, self.lib = fd, os.getpid(), lib
        self.owners: dict[int, list[tuple["DirectoryWatch", bytes]]] = {}   # wd -> (watch, its folder)
        self.lock = threading.Lock()

    def add(self, watch: "DirectoryWatch", full: bytes, rel_dir: bytes) -> int:
        with self.lock:
            wd = self.lib.inotify_add_watch(self.fd, full, _MASK)
            if wd < 0:
                return -ctypes.get_errno()
            owners = self.owners.setdefault(wd, [])  # the same folder twice is one watch descriptor
            if all(w is not watch for w, _ in owners):
                owners.append((watch, rel_dir))
            return wd

    def drop(self, watch: "DirectoryWatch", wds) -> None:
        with self.lock:
            for wd in wds:
                owners = [(w, d) for w, d in self.owners.get(wd, []) if w is not watch]
                if owners:
                    self.owners[wd] = owners
                else:
                    self.owners.pop(wd, None)
                    self.lib.inotify_rm_watch(self.fd, wd)

    def pump(self) -> None:
        """Read every event queued and hand each to the watches of its folder."""
        with self.lock:
            while True:
                try:
                    buf = os.read(self.fd, 65536)
                except BlockingIOError:
                    return
                self._parse(buf)

    def _parse(self, buf: bytes) -> None:
        off = 0
        while off < len(buf):
            wd, mask, _cookie, size = _EVENT.unpack_from(buf, off)
            name = buf[off + 16:off + 16 + size].rstrip(b"\0")
            off += 16 + size
            if mask & _IN_Q_OVERFLOW:   # dropped events: no watch can trust what it was told
                for owners in self.owners.values():
                    for watch, _ in owners:
                        watch._pending.overflow = True
                continue
            owners = self.owners.get(wd)
            if not owners:
                continue   # a watch dropped since: its last events are nobody's
            for watch, parent in owners:
                pending = watch._pending
                if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED):
                    pending.directories.add(parent)   # the watched folder itself went away
                    if mask & _IN_IGNORED:
                        watch._dirs.pop(wd, None)
                    continue
                path = parent + b"/" + name if parent else name
                (pending.directories if mask & _IN_ISDIR else pending.paths).add(path)
            if mask & _IN_MOVE_SELF:
                self.lib.inotify_rm_watch(self.fd, wd)
            if mask & _IN_IGNORED:
                self.owners.pop(wd, None)


_hub: _Hub | None = None
_hub_lock = threading.Lock()


def _shared_hub(lib) -> _Hub:
    global _hub
    with _hub_lock:
        if _hub is None or _hub.pid != os.getpid():   # a fork starts afresh
            _hub = _Hub(lib)
        return _hub


class DirectoryWatch:
    """inotify watches on chosen directories of one checkout, on the process's one inotify instance."""

    def __init__(self, root: bytes) -> None:
        lib = _inotify()
        if lib is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this system")
        self._hub = _shared_hub(lib)
        self.root, self.pid = root, os.getpid()
        self.open = True
        self._dirs: dict[int, bytes] = {}      # watch descriptor -> directory relative to root
        self._pending = Changes()

    @property
    def usable(self) -> bool:
        return self.open and self.pid == os.getpid()

    def watch(self, rel_dir: bytes) -> bool:
        """Start watching a directory (idempotent); False when it does not exist. OSError when the
        system refuses (fs.inotify.max_user_watches reached, for example)."""
        full = os.path.join(self.root, rel_dir) if rel_dir else self.root
        wd = self._hub.add(self, full, rel_dir)
        if wd < 0:
            if -wd in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise OSError(-wd, f"cannot watch {full!r}: {os.strerror(-wd)}")
        self._dirs[wd] = rel_dir
        return True

    @property
    def watched(self) -> set[bytes]:
        return set(self._dirs.values())

    def drain(self) -> Changes:
        """Everything reported since the previous drain."""
        self._hub.pump()
        found, self._pending = self._pending, Changes()
        return found

    def close(self) -> None:
        if self.open and self.pid == os.getpid():
            self._hub.drop(self, list(self._dirs))
        self._dirs.clear()
        self.open = False
