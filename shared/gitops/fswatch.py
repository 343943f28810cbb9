"""Which files in a checkout may have changed since a moment: Linux inotify on the directories
that hold tracked files (what git's fsmonitor gets from a watcher daemon), so a long-running
merger need not lstat every tracked file before each merge. Not available elsewhere (None)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
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
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        _libc = lib if hasattr(lib, "inotify_init1") else False
    return _libc or None


@dataclass
class Changes:
    """What happened since the last drain: file paths, directory paths (everything under them may
    have changed), and whether the kernel dropped events (then nothing can be trusted)."""
    paths: set[bytes] = field(default_factory=set)
    directories: set[bytes] = field(default_factory=set)
    overflow: bool = False


class DirectoryWatch:
    """inotify watches on chosen directories of one checkout; one per process (forks start afresh)."""

    def __init__(self, root: bytes) -> None:
        lib = _inotify()
        if lib is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this system")
        fd = lib.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.root, self.fd, self.pid = root, fd, os.getpid()
        self._lib = lib
        self._dirs: dict[int, bytes] = {}      # watch descriptor -> directory relative to root
        self._pending = Changes()

    @property
    def usable(self) -> bool:
        return self.fd >= 0 and self.pid == os.getpid()

    def watch(self, rel_dir: bytes) -> bool:
        """Start watching a directory (idempotent); False when it does not exist. OSError when the
        system refuses (fs.inotify.max_user_watches reached, for example)."""
        full = os.path.join(self.root, rel_dir) if rel_dir else self.root
        wd = self._lib.inotify_add_watch(self.fd, full, _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise OSError(err, f"cannot watch {full!r}: {os.strerror(err)}")
        self._dirs[wd] = rel_dir
        return True

    @property
    def watched(self) -> set[bytes]:
        return set(self._dirs.values())

    def drain(self) -> Changes:
        """Everything reported since the previous drain."""
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            self._parse(buf)
        found, self._pending = self._pending, Changes()
        return found

    def _parse(self, buf: bytes) -> None:
        pending, off = self._pending, 0
        while off < len(buf):
            wd, mask, _cookie, size = _EVENT.unpack_from(buf, off)
            name = buf[off + 16:off + 16 + size].rstrip(b"\0")
            off += 16 + size
            if mask & _IN_Q_OVERFLOW:
                pending.overflow = True
                continue
            parent = self._dirs.get(wd)
            if parent is None:
                continue
            if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED):
                pending.directories.add(parent)   # the watched folder itself went away
                if mask & _IN_MOVE_SELF:
                    self._lib.inotify_rm_watch(self.fd, wd)
                if mask & _IN_IGNORED:
                    del self._dirs[wd]
                continue
            path = parent + b"/" + name if parent else name
            (pending.directories if mask & _IN_ISDIR else pending.paths).add(path)

    def close(self) -> None:
        if self.fd >= 0 and self.pid == os.getpid():
            os.close(self.fd)
        self.fd = -1
