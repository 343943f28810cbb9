"""Walking a worktree the way a person reads it: no .git, no caches or dependency folders,
nothing the root .gitignore ignores, no symlink that leads outside."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from dulwich.ignore import IgnoreFilter, read_ignore_patterns

SKIP_DIRS = frozenset({".git", ".worktrees", "node_modules", "__pycache__", ".venv", "venv",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".cache"})
BINARY_SNIFF = 8192


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern:
    """Shell glob over '/'-separated paths: `*` and `?` stay within a folder, `**/` spans folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_matches(pattern: str, rel: str) -> bool:
    """A pattern without '/' matches a file name anywhere (like ripgrep's --glob)."""
    if "/" not in pattern and not pattern.startswith("**"):
        return bool(glob_to_regex(pattern).match(rel.rsplit("/", 1)[-1]))
    return bool(glob_to_regex(pattern).match(rel))


def _ignore_filter(root: Path) -> IgnoreFilter | None:
    gitignore = root / ".gitignore"
    if not gitignore.is_file():
        return None
    with open(gitignore, "rb") as f:
        return IgnoreFilter(list(read_ignore_patterns(f)))


def inside(root: Path, path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def walk_files(root: Path, start: Path | None = None) -> Iterator[Path]:
    """Files under `start` (default: root) in sorted order, as real paths inside root."""
    for _, entry in walk_entries(root, start):
        yield Path(entry.path)


def walk_entries(root: Path, start: Path | None = None) -> Iterator[tuple[str, os.DirEntry]]:
    """(path relative to root, directory entry) of the files `walk_files` gives, in its order: a
    folder's files, then its folders. By `os.scandir`, whose entries already know their type (the
    repository map of every attempt walks the whole tree)."""
    ignore = _ignore_filter(root)

    def ignored(rel: str, is_dir: bool) -> bool:
        return bool(ignore and ignore.is_ignored(rel + ("/" if is_dir else "")))

    def visit(folder: str, rel_dir: str) -> Iterator[tuple[str, os.DirEntry]]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return  # gone or unreadable meanwhile: as os.walk, skipped
        folders = []
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                folders.append(e)
                continue
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.name == ".git" or ignored(rel, False) or (e.is_symlink() and not inside(root, Path(e.path))):
                continue
            yield rel, e
        for e in folders:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.name in SKIP_DIRS or ignored(rel, True) or e.is_symlink():
                continue  # a linked folder is not followed
            yield from visit(e.path, rel)

    start = start or root
    yield from visit(str(start), Path(start).relative_to(root).as_posix() if Path(start) != Path(root) else "")


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
