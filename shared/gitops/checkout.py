"""Working-tree operations without the `git` binary: is a checkout clean, stage everything
(`git add -A`), and move a checkout from one tree to another."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dulwich.diff_tree import tree_changes
from dulwich.ignore import IgnoreFilter, IgnoreFilterManager
from dulwich.index import (
    Index,
    build_index_from_tree,
    get_unstaged_changes,
    index_entry_from_stat,
    update_working_tree,
)
from dulwich.objects import Blob
from dulwich.repo import Repo

from shared.gitops.objects import write_object
from shared.gitops.refwrite import repo_settings

from shared.gitops.checkout_index import (
    remove_untracked,
    stage_working_tree,
    switch_working_tree,
    tracked_paths,
    walk_checkout,
    working_tree_clean,
)
from shared.gitops.fastindex import UnsupportedIndex


def head_tree(repo: Repo) -> bytes | None:
    try:
        return repo[repo.head()].tree
    except KeyError:
        return None


def _index_tree(repo: Repo, index: Index) -> bytes:
    return index.commit(repo.object_store)


def is_clean(repo: Repo, tree: bytes) -> bool:
    """The index lists exactly `tree` and no tracked file is modified or deleted in the working
    tree (untracked files do not count): what a checkout must be to follow a moved branch."""
    try:
        return working_tree_clean(repo.path, repo.index_path(), repo.object_store, tree)
    except UnsupportedIndex:   # index version 3/4, required extensions, conflicts: dulwich reads it
        index = repo.open_index()
        return index.commit(repo.object_store) == tree and next(iter(get_unstaged_changes(index, repo.path)), None) is None


def ignore_rules(repo: Repo) -> IgnoreFilterManager:
    """dulwich's IgnoreFilterManager.from_repo, with the configuration read once per change of its
    files (`repo_settings`); the ignore files themselves are read each time, as git does."""
    settings = repo_settings(repo)
    global_filters = []
    for p in (os.path.join(repo.controldir(), "info", "exclude"), settings.user_ignore):
        try:
            global_filters.append(IgnoreFilter.from_path(os.path.expanduser(p)))
        except OSError:
            pass
    return IgnoreFilterManager(repo.path, global_filters, settings.ignorecase)


def _mode_of(st: os.stat_result) -> int:
    if stat.S_ISLNK(st.st_mode):
        return 0o120000
    return 0o100755 if st.st_mode & 0o111 else 0o100644


def stage_all(repo: Repo) -> bytes:
    """Like `git add -A`: adds, edits, deletions and mode changes; honours .gitignore.
    Writes the index and returns the tree it describes."""
    ignore = ignore_rules(repo)
    head = head_tree(repo)
    if head is not None:
        try:   # the usual case: the index lists HEAD, so only what changed is hashed and rebuilt
            return stage_working_tree(repo.path, repo.index_path(), repo.object_store, head, ignore.is_ignored)
        except UnsupportedIndex:
            pass
    root = os.fsencode(repo.path)
    index = repo.open_index()
    tracked = {path for path in index.paths()}
    tracked_dirs = {os.path.dirname(p) for p in tracked}
    tracked_dirs |= {d for p in list(tracked_dirs) for d in _parents(p)}
    seen: set[bytes] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = b"" if rel_dir == b"." else rel_dir
        keep = []
        for d in dirnames:
            rel = os.path.join(rel_dir, d) if rel_dir else d
            full = os.path.join(dirpath, d)
            if d == b".git" or os.path.exists(os.path.join(full, b".git")):
                continue  # git metadata, nested repositories and linked worktrees are not content
            if os.path.islink(full):
                filenames.append(d)
                continue
            if rel not in tracked_dirs and ignore.is_ignored(rel.decode(errors="surrogateescape") + "/"):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            if f == b".git":
                continue  # a linked worktree's pointer to its git directory
            rel = os.path.join(rel_dir, f) if rel_dir else f
            if rel not in tracked and ignore.is_ignored(rel.decode(errors="surrogateescape")):
                continue
            full = os.path.join(dirpath, f)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            seen.add(rel)
            mode = _mode_of(st)
            if rel in tracked:
                entry = index[rel]
                if entry.mode == mode and entry.size == (st.st_size & 0xFFFFFFFF) and _same_mtime(entry, st):
                    continue
            data = os.readlink(full) if stat.S_ISLNK(st.st_mode) else Path(os.fsdecode(full)).read_bytes()
            blob = Blob.from_string(data)
            if rel not in tracked or index[rel].sha != blob.id or index[rel].mode != mode:
                write_object(repo.object_store, blob)
            index[rel] = index_entry_from_stat(st, blob.id, mode)
    for rel in tracked - seen:
        del index[rel]
    index.write()
    return _index_tree(repo, index)


def _parents(p: bytes):
    while p:
        p = os.path.dirname(p)
        if p:
            yield p


def _same_mtime(entry, st: os.stat_result) -> bool:
    mtime = entry.mtime if isinstance(entry.mtime, tuple) else (int(entry.mtime), 0)
    return mtime[0] == int(st.st_mtime) and mtime[1] == st.st_mtime_ns % 1_000_000_000


def switch_tree(repo: Repo, old_tree: bytes | None, new_tree: bytes, *, judged_clean: bool = False) -> None:
    """Move a clean checkout (working files and index) from old_tree to new_tree. judged_clean:
    is_clean(repo, old_tree) just said yes, and an index changed since then stops the move."""
    if old_tree is None:
        build_index_from_tree(repo.path, repo.index_path(), repo.object_store, new_tree)
        return
    try:
        switch_working_tree(repo.path, repo.index_path(), repo.object_store, old_tree, new_tree,
                            index_judged_clean=judged_clean)
        return
    except UnsupportedIndex:
        pass   # nothing was changed: dulwich handles the indexes fastindex does not rewrite
    changes = tree_changes(repo.object_store, old_tree, new_tree)
    update_working_tree(repo, old_tree, new_tree, changes, allow_overwrite_modified=True)


def reset_hard(repo: Repo, tree: bytes) -> None:
    """Working files and index exactly match `tree`; untracked files that are not ignored are removed
    (ignored ones such as .env and dependency folders stay)."""
    root = Path(repo.path)
    index_file = Path(repo.index_path())
    if index_file.exists():
        index_file.unlink()
    ignore = ignore_rules(repo)  # read before .gitignore itself is removed
    for child in root.iterdir():
        if child.name == ".git":
            continue
        _remove_unignored(ignore, root, child)
    build_index_from_tree(repo.path, repo.index_path(), repo.object_store, tree)


def reset_to(repo: Repo, tree: bytes) -> bool:
    """reset_hard, touching only what differs: a checkout whose index and tracked files already
    match `tree` just loses its untracked, unignored files (a reused worktree is usually clean,
    and rewriting every file made each task cost as much as the whole repository).
    Returns False when it fell back to the full reset."""
    try:
        clean = is_clean(repo, tree)
    except (OSError, KeyError, ValueError):  # no index yet, or one that cannot be read: start over
        clean = False
    if not clean:
        reset_hard(repo, tree)
        return False
    ignore: list[IgnoreFilterManager] = []

    def is_ignored(path: str) -> bool | None:  # the rules read only if something is untracked (1.2 ms)
        if not ignore:
            ignore.append(ignore_rules(repo))
        return ignore[0].is_ignored(path)

    try:
        remove_untracked(repo.path, repo.index_path(), is_ignored)
        return True
    except UnsupportedIndex:
        pass
    tracked = {p: b"" for p in repo.open_index().paths()}
    tracked_dirs = frozenset(d for p in tracked for d in (os.path.dirname(p), *_parents(p)))
    root = os.fsencode(os.path.abspath(repo.path))
    folders: list[bytes] = []
    for rel, _entry in walk_checkout(root, tracked, tracked_dirs, is_ignored, folders):
        if rel not in tracked:
            os.unlink(root + b"/" + rel)
    for d in reversed(folders[1:]):   # children before parents; git leaves no empty untracked folder
        if d not in tracked_dirs:
            try:
                os.rmdir(root + b"/" + d)
            except OSError:
                pass
    return True


def tracked_files(checkout: Path | str) -> list[tuple[str, int, int]] | None:
    """(path, size, mode) of every file the checkout's index lists, from the index alone (no walk,
    no ignore rules); None when there is no index this layer reads (then walk the folder)."""
    dot_git = Path(checkout) / ".git"
    try:
        if dot_git.is_file():   # a linked worktree: "gitdir: <its folder in the repository>"
            index_path = str(Path(checkout) / dot_git.read_text().split("gitdir:", 1)[1].strip() / "index")
        else:
            index_path = str(dot_git / "index")
        raw, _ = tracked_paths(index_path)
    except (OSError, IndexError, UnsupportedIndex):
        return None
    return [(os.fsdecode(p), int.from_bytes(e[36:40], "big"), int.from_bytes(e[24:28], "big")) for p, e in raw.items()]


def _remove_unignored(ignore: IgnoreFilterManager, root: Path, path: Path, keep: set[str] = frozenset()) -> None:
    stack = [path]
    while stack:
        p = stack.pop()
        rel = p.relative_to(root).as_posix()
        if p.is_dir() and not p.is_symlink():
            if ignore.is_ignored(rel + "/") or (p / ".git").exists():
                continue
            stack.extend(p.iterdir())
            continue
        if rel not in keep and not ignore.is_ignored(rel):
            p.unlink()
    for dirpath, dirnames, filenames in os.walk(path, topdown=False) if path.is_dir() and not path.is_symlink() else []:
        if not os.listdir(dirpath):
            os.rmdir(dirpath)
