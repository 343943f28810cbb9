"""Opening files beneath a worktree without a race: every component is opened relative to its
parent's file descriptor with O_NOFOLLOW, and a symlink is followed only by this code, only
while it stays inside. A symlink swapped in between cannot redirect an open: the kernel never
follows one on our behalf, and a folder already opened cannot leave the worktree."""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from pathlib import Path

MAX_LINKS = 40
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Escape(Exception):
    """The path leaves the worktree or enters .git; the message says so for the model."""


class Beneath:
    def __init__(self, root: Path | str):
        self.root = Path(os.path.realpath(root))

    def open(self, rel: str, flags: int, mode: int = 0o644, *, make_parents: bool = False) -> tuple[int, str]:
        """An fd for `rel` (relative, '/'-separated) and its real path relative to the root."""
        todo = deque(p for p in rel.split("/") if p not in ("", "."))
        stack = [os.open(self.root, _DIR)]
        names: list[str] = []
        links = 0
        try:
            while True:
                if not todo:  # the path names a folder reached through '..' or a link (or the root)
                    return os.open(".", flags | os.O_CLOEXEC, dir_fd=stack[-1]), "/".join(names) or "."
                name = todo.popleft()
                if name == "..":
                    if not names:
                        raise Escape(f"{rel!r} leads outside the worktree")
                    os.close(stack.pop())
                    names.pop()
                    continue
                if name == ".git":
                    raise Escape(f"{rel!r} is inside .git")
                last = not todo
                try:
                    if last:
                        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=stack[-1])
                        return fd, "/".join([*names, name])
                    fd = os.open(name, _DIR, dir_fd=stack[-1])
                except FileNotFoundError:
                    if last or not make_parents:
                        raise
                    try:
                        os.mkdir(name, 0o755, dir_fd=stack[-1])
                    except FileExistsError:
                        pass
                    todo.appendleft(name)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    target = self._link(name, stack[-1])
                    if target is None:  # a file where a folder was expected
                        raise
                    links += 1
                    if links > MAX_LINKS:
                        raise Escape(f"{rel!r} goes through more than {MAX_LINKS} symlinks") from None
                    if target.startswith("/"):  # absolute: allowed only when it names a place inside
                        inside = os.path.normpath(target)
                        if inside != str(self.root) and not inside.startswith(str(self.root) + "/"):
                            raise Escape(f"{rel!r} leads through a symlink to {target}, outside the worktree") from None
                        while len(stack) > 1:
                            os.close(stack.pop())
                        names.clear()
                        target = inside[len(str(self.root)):]
                    todo.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                    continue
                stack.append(fd)
                names.append(name)
        finally:
            for fd in stack:
                os.close(fd)

    @staticmethod
    def _link(name: str, dir_fd: int) -> str | None:
        try:
            return os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return None

    # -- conveniences the tools use --------------------------------------------------------
    def read_bytes(self, rel: str) -> tuple[bytes, str]:
        """Regular files only: a FIFO or a device is refused rather than blocking or streaming."""
        fd, real = self.open(rel, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder", rel)
            if not stat.S_ISREG(st.st_mode):
                raise Escape(f"{rel!r} is not a regular file")
            return f.read(), real

    def write_bytes(self, rel: str, data: bytes) -> str:
        fd, real = self.open(rel, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, make_parents=True)
        with os.fdopen(fd, "wb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise Escape(f"{rel!r} is not a regular file")
            f.truncate(0)  # only after the checks: a refused open must not have emptied anything
            f.write(data)
        return real

    def kind(self, rel: str) -> tuple[str, str]:
        """('file' | 'dir' | 'other' | 'missing', real relative path)."""
        try:
            fd, real = self.open(rel, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return "missing", rel
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
        return ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"), real
