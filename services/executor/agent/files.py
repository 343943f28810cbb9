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
    ignore = _ignore_filter(root)
    start = start or root
    for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix() if here != root else ""

        def ignored(name: str, is_dir: bool) -> bool:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            return bool(ignore and ignore.is_ignored(rel + ("/" if is_dir else "")))

        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not ignored(d, True))
        for name in sorted(filenames):
            path = here / name
            if name == ".git" or ignored(name, False) or (path.is_symlink() and not inside(root, path)):
                continue
            yield path


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
