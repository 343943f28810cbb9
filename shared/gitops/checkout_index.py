"""A checkout judged and moved through its git index (fastindex): is it clean against a tree, and
move it from one tree to another touching only the paths that differ, as `git merge` does.
Raises UnsupportedIndex, before changing anything, for indexes fastindex does not rewrite."""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from typing import Callable, Iterator

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Blob, Tree

from shared.gitops.fastindex import (
    IndexFile,
    IndexKey,
    IndexLock,
    UnsupportedIndex,
    content_matches,
    file_mode,
    index_matches_tree,
    is_racy,
    pack_entry,
    read_index,
    stat_matches,
    write_index,
)
from shared.gitops.fswatch import DirectoryWatch
from shared.gitops.objects import blob_data, cached_store, changed_names, tree_entries
from shared.gitops.treeedit import Edit, apply_edits

# a merger follows one checkout per target; an executor judges one per worktree, and a run by epic
# keeps one per epic (100 at 1,000 tasks): a checkout dropped from here is walked in full next time
_MAX_CHECKOUTS = 256
use_watches = True   # False: every check lstats every tracked file (the benchmark compares both)


@dataclass
class _CheckoutState:
    watch: DirectoryWatch | None = None
    verified: IndexKey | None = None        # every entry of this index matched its file, watch live since
    refreshed: dict[bytes, bytes] = field(default_factory=dict)   # stat-only changes, for the next write
    refreshed_for: IndexKey | None = None
    judged_clean: IndexKey | None = None    # the index working_tree_clean last said yes to
    # at this index, besides `verified`, no untracked file that is not ignored existed and every folder
    # read was watched; what the watch reported since is kept here, so a commit or a reset looks only there
    complete: IndexKey | None = None
    events: set[bytes] = field(default_factory=set)
    event_dirs: set[bytes] = field(default_factory=set)


_mutex = threading.RLock()    # one check or move at a time: the watch and the caches are shared
_states: OrderedDict[bytes, _CheckoutState] = OrderedDict()


def _state(root: bytes) -> _CheckoutState:
    state = _states.get(root)
    if state is None or (state.watch is not None and not state.watch.usable):
        state = _states[root] = _CheckoutState()
    _states.move_to_end(root)
    while len(_states) > _MAX_CHECKOUTS:
        _, old = _states.popitem(last=False)
        if old.watch is not None:
            old.watch.close()
    return state


def _read(index_path: str) -> IndexFile:
    index = read_index(index_path)
    if index is None:
        raise UnsupportedIndex(f"{index_path} does not exist")
    return index


def working_tree_clean(root: str, index_path: str, store: BaseObjectStore, tree: bytes) -> bool:
    """The index lists exactly `tree` and no tracked file is modified or deleted (untracked files
    do not count)."""
    with _mutex:
        index = _read(index_path)
        rootb = os.fsencode(os.path.abspath(root))
        _state(rootb).judged_clean = None
        if not index_matches_tree(store, index, tree) or not _files_clean(rootb, index):
            return False
        _state(rootb).judged_clean = index.key
        return True


def _files_clean(root: bytes, index: IndexFile) -> bool:
    state = _state(root)
    if state.watch is not None and state.verified == index.key:
        changes = _drain(state, index)
        if not changes.overflow:
            suspects = changes.paths & index.raw.keys()
            for d in changes.directories:
                _rewatch(state.watch, index, d)     # before looking, so later changes are reported
                suspects.update(index.under(d))
                if d in index.raw:
                    suspects.add(d)
            if all(_entry_clean(root, index, p, state, always_hash=True) for p in suspects):
                return True
            state.verified = state.complete = None
            return False
    state.verified, state.complete, state.refreshed, state.refreshed_for = None, None, {}, index.key
    watching = _watch_all(root, state, index)
    if not all(_entry_clean(root, index, p, state, always_hash=False) for p in index.paths):
        return False
    if watching:
        state.verified = index.key
    return True


def _drain(state: _CheckoutState, index: IndexFile):
    """The watch's news, also kept for the next commit or reset while the picture is complete."""
    changes = state.watch.drain()
    if state.complete != index.key or changes.overflow:
        state.complete = None
        state.events, state.event_dirs = set(), set()
    else:
        state.events |= changes.paths
        state.event_dirs |= changes.directories
    return changes


def _complete(state: _CheckoutState, key: IndexKey) -> None:
    state.verified = state.complete = key
    state.events, state.event_dirs = set(), set()


def _watch_all(root: bytes, state: _CheckoutState, index: IndexFile) -> bool:
    """Watch every tracked directory, then forget earlier events: everything is about to be looked at."""
    if not use_watches:
        return False
    try:
        if state.watch is None:
            state.watch = DirectoryWatch(root)
        missing = index.directories() - state.watch.watched
        for d in sorted(missing):
            state.watch.watch(d)
        state.watch.drain()
        return True
    except OSError:   # no inotify here, or out of watches: every check looks at every file
        if state.watch is not None:
            state.watch.close()
        state.watch = None
        return False


def _rewatch(watch: DirectoryWatch, index: IndexFile, changed_dir: bytes) -> None:
    inside = changed_dir + b"/"
    for d in sorted(index.directories()):
        if not changed_dir or d == changed_dir or d.startswith(inside):
            watch.watch(d)


def _entry_clean(root: bytes, index: IndexFile, path: bytes, state: _CheckoutState, always_hash: bool) -> bool:
    full = root + b"/" + path
    try:
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return False
    entry = index.raw[path]
    if not always_hash and stat_matches(entry, st) and not is_racy(entry, index.mtime):
        return True
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)) or not content_matches(entry, full, st):
        return False
    if not stat_matches(entry, st) and state.refreshed_for == index.key:
        state.refreshed[path] = pack_entry(path, st, entry[40:60], int.from_bytes(entry[24:28], "big"))
    return True


def switch_working_tree(root: str, index_path: str, store: BaseObjectStore, old_tree: bytes, new_tree: bytes,
                        *, index_judged_clean: bool = False) -> None:
    """Move files and index from old_tree to new_tree (the index must list old_tree). Untracked
    files in the way stop it with OSError before anything is changed. With index_judged_clean,
    an index changed since working_tree_clean said yes stops it too."""
    store = cached_store(store)  # loose objects first: a merge's new objects are loose
    with _mutex, IndexLock(index_path) as lock:
        index = _read(index_path)
        rootb = os.fsencode(os.path.abspath(root))
        state = _state(rootb)
        if index_judged_clean and index.key != state.judged_clean:
            raise OSError(f"{index_path} changed while the merge was being published")
        if not index_matches_tree(store, index, old_tree):
            raise UnsupportedIndex(f"{index_path} does not list tree {old_tree.decode()}")
        removed: list[bytes] = []
        written: list[tuple[bytes, int, bytes]] = []
        _tree_diff(store, old_tree, new_tree, b"", removed, written)
        _refuse_obstacles(rootb, index, set(removed), written)
        changed = dict(state.refreshed) if state.refreshed_for == index.key else {}
        for p in removed:
            _remove_file(rootb, p)
            changed.pop(p, None)
        for p, mode, sha in written:
            full = rootb + b"/" + p
            _make_parents(rootb, p, state.watch)
            if p in index.raw:
                os.unlink(full)
            changed[p] = _write_entry(store, full, p, mode, sha)
        new_index = write_index(lock, index, set(removed) - changed.keys(), changed, new_tree)
        state.refreshed, state.refreshed_for, state.judged_clean = {}, None, None
        if state.verified == index.key:   # untouched entries still hold; written files left events
            state.verified = new_index.key
            if state.complete == index.key:   # and it wrote no untracked file
                state.complete = new_index.key


def _index_mode(mode: int) -> int:
    return 0o120000 if stat.S_ISLNK(mode) else (0o100755 if mode & 0o100 else 0o100644)


def _tree_diff(store: BaseObjectStore, old: bytes | None, new: bytes | None, prefix: bytes,
               removed: list[bytes], written: list[tuple[bytes, int, bytes]]) -> None:
    """Files to delete and to write to go from tree `old` to tree `new`; equal subtrees are skipped."""
    if old == new:
        return
    a = tree_entries(store, old) if old else {}
    b = tree_entries(store, new) if new else {}
    for name in changed_names(a, b):
        was, now = a.get(name), b.get(name)
        path = prefix + name
        if now is not None and now[0] == 0o160000:
            raise UnsupportedIndex(f"submodule {path!r}")
        was_dir = was is not None and stat.S_ISDIR(was[0])
        now_dir = now is not None and stat.S_ISDIR(now[0])
        if was_dir or now_dir:
            _tree_diff(store, was[1] if was_dir else None, now[1] if now_dir else None, path + b"/", removed, written)
        if was is not None and not was_dir and (now is None or now_dir):
            removed.append(path)
        if now is not None and not now_dir:
            written.append((path, now[0], now[1]))


def _refuse_obstacles(root: bytes, index: IndexFile, removed: set[bytes], written: list) -> None:
    """Like git, never overwrite an untracked file: find every one in the way before writing (one
    lstat a path: a move brings in every file merged since, a hundred at a time in a large run)."""
    checked: set[bytes] = set()
    for p, _mode, _sha in written:
        if p not in index.raw:
            full = root + b"/" + p
            st = _lstat(full)
            if st is not None and stat.S_ISDIR(st.st_mode):   # a folder, not a link to one
                for dirpath, _dirs, files in os.walk(full):
                    for f in files:
                        rel = os.path.relpath(os.path.join(dirpath, f), root)
                        if rel not in removed:
                            raise OSError(f"untracked {rel.decode(errors='replace')} is in the way")
            elif st is not None:
                raise OSError(f"untracked {p.decode(errors='replace')} is in the way")
        d = os.path.dirname(p)
        while d and d not in checked:
            checked.add(d)
            st = _lstat(root + b"/" + d)
            if st is not None and not stat.S_ISDIR(st.st_mode) and d not in removed:
                raise OSError(f"untracked {d.decode(errors='replace')} is in the way")
            d = os.path.dirname(d)


def _lstat(full: bytes) -> os.stat_result | None:
    """os.lstat, None where os.path.lexists says False."""
    try:
        return os.lstat(full)
    except (OSError, ValueError):
        return None


def _remove_file(root: bytes, path: bytes) -> None:
    try:
        os.unlink(root + b"/" + path)
    except FileNotFoundError:
        pass
    d = os.path.dirname(path)
    while d:
        try:
            os.rmdir(root + b"/" + d)   # only succeeds when the folder became empty, as git leaves it
        except OSError:
            return
        d = os.path.dirname(d)


def _make_parents(root: bytes, path: bytes, watch: DirectoryWatch | None) -> None:
    d = os.path.dirname(path)
    missing = []
    while d and not os.path.isdir(root + b"/" + d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        full = root + b"/" + d
        if os.path.lexists(full):   # a tracked file or symlink being replaced by a folder
            os.unlink(full)
        os.mkdir(full)
        if watch is not None:
            watch.watch(d)


# ---------------------------------------------------------------- staging and fresh checkouts
def walk_checkout(root: bytes, tracked: dict[bytes, bytes] | frozenset[bytes], tracked_dirs: frozenset[bytes],
                  is_ignored: Callable[[str], bool], folders: list[bytes] | None = None,
                  on_folder: Callable[[bytes], None] | None = None, start: bytes = b"") -> Iterator[tuple[bytes, os.DirEntry]]:
    """(path, entry) of every regular file and symlink that is tracked or not ignored, outside
    .git, nested repositories and linked worktrees (what `git add -A` looks at). `folders`
    collects the folders walked, parents first; `on_folder` is called before a folder is read;
    `start`: a folder to walk instead of the whole checkout."""
    stack = [start]
    while stack:
        rel_dir = stack.pop()
        if folders is not None:
            folders.append(rel_dir)
        if on_folder is not None:
            on_folder(rel_dir)
        try:
            listing = os.scandir(root + b"/" + rel_dir if rel_dir else root)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with listing:
            for entry in listing:
                name = entry.name
                if name == b".git":
                    continue   # git metadata, or a linked worktree's pointer to it
                rel = rel_dir + b"/" + name if rel_dir else name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if os.path.lexists(entry.path + b"/.git"):
                            continue   # nested repositories and linked worktrees are not content
                        if rel in tracked_dirs or not is_ignored(rel.decode(errors="surrogateescape") + "/"):
                            stack.append(rel)
                        continue
                    if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
                        continue   # sockets, fifos, devices: not content
                    if rel not in tracked and is_ignored(rel.decode(errors="surrogateescape")):
                        continue
                except FileNotFoundError:
                    continue
                yield rel, entry


def tracked_paths(index_path: str) -> tuple[dict[bytes, bytes], frozenset[bytes]]:
    """The index's entries (path -> raw entry) and the folders holding them."""
    index = _read(index_path)
    return index.raw, index.directories()


def stage_working_tree(root: str, index_path: str, store: BaseObjectStore, head_tree: bytes,
                       is_ignored: Callable[[str], bool]) -> bytes:
    """`git add -A` for an index that lists `head_tree`: files whose stat changed are hashed,
    and the new tree is `head_tree` with only the changed paths rebuilt. Returns the tree.
    When the watch holds the complete picture since the last commit or reset, only what it
    reported is looked at; otherwise every folder is walked. UnsupportedIndex (nothing changed)
    when the index lists anything else."""
    store = cached_store(store)
    with _mutex, IndexLock(index_path) as lock:
        index = _read(index_path)
        if not index_matches_tree(store, index, head_tree):
            raise UnsupportedIndex(f"{index_path} does not list tree {head_tree.decode()}")
        rootb = os.fsencode(os.path.abspath(root))
        state = _state(rootb)
        watching = [True]

        def watch(folder: bytes) -> None:   # before the folder is read, so later changes are reported
            if watching[0]:
                try:
                    watching[0] = state.watch is not None and (state.watch.watch(folder) or True)
                except OSError:   # out of watches: the next check looks at every file
                    watching[0] = False

        found = _reported(rootb, index, state, is_ignored, watch)
        if found is None:   # walk everything: every folder watched before it is read
            watching[0] = _watch_all(rootb, state, index)
            found = (_stat_of(walk_checkout(rootb, index.raw, index.directories(), is_ignored, on_folder=watch)),
                     set(index.raw))
        candidates, missing = found
        changed: dict[bytes, bytes] = {}
        edits: dict[bytes, Edit] = {}
        for rel, st in candidates:
            if st is None:
                continue
            entry = index.raw.get(rel)
            if entry is not None:
                missing.discard(rel)
                if stat_matches(entry, st) and not is_racy(entry, index.mtime):
                    continue
            full = rootb + b"/" + rel
            try:
                data = os.readlink(full) if stat.S_ISLNK(st.st_mode) else _read_file(full)
            except (FileNotFoundError, NotADirectoryError):   # gone since it was seen: the watch says so
                continue
            blob, mode = Blob.from_string(data), file_mode(st)
            if entry is None or entry[40:60] != blob.sha().digest() or entry[24:28] != mode.to_bytes(4, "big"):
                store.add_object(blob)
                edits[rel] = (mode, blob.id)
            changed[rel] = pack_entry(rel, st, blob.sha().digest(), mode)
        for rel in missing:
            edits[rel] = None
        if not changed and not missing:
            if watching[0]:
                _complete(state, index.key)
            else:
                state.verified = state.complete = None
            return head_tree
        trees: list = []
        tree = apply_edits(store, head_tree, edits, trees) if edits else head_tree
        if tree is None:   # everything was deleted: git commits the empty tree
            empty = Tree()
            trees.append(empty)
            tree = empty.id
        for t in trees:
            store.add_object(t)
        written = write_index(lock, index, missing, changed, tree)
        state.refreshed, state.refreshed_for, state.judged_clean = {}, None, None
        if watching[0]:
            _complete(state, written.key)
        else:
            state.verified = state.complete = None
        return tree


def remove_untracked(root: str, index_path: str, is_ignored: Callable[[str], bool]) -> None:
    """Delete the files that are neither tracked nor ignored, and the folders that leaves empty, in a
    checkout working_tree_clean just judged clean: where the watch reported something when it holds
    the complete picture, else everywhere (each folder watched before it is read)."""
    with _mutex:
        index = _read(index_path)
        rootb = os.fsencode(os.path.abspath(root))
        state = _state(rootb)
        watching = [True]

        def watch(folder: bytes) -> None:
            if watching[0]:
                try:
                    watching[0] = state.watch is not None and (state.watch.watch(folder) or True)
                except OSError:
                    watching[0] = False

        found = _reported(rootb, index, state, is_ignored, watch)
        folders: list[bytes] = []
        if found is not None:
            gone = [rel for rel, _ in found[0] if rel not in index.raw]
        else:
            watching[0] = state.watch is not None and state.verified == index.key
            if watching[0]:
                news = state.watch.drain()
                watching[0] = not (news.overflow or news.paths or news.directories)   # else: judged on stale news
            if watching[0]:
                _complete(state, index.key)   # from here on, what the watch reports is kept
            else:
                state.complete = None
            gone = [rel for rel, _ in walk_checkout(rootb, index.raw, index.directories(), is_ignored, folders,
                                                    on_folder=watch) if rel not in index.raw]
        for rel in gone:
            try:
                os.unlink(rootb + b"/" + rel)
            except FileNotFoundError:
                pass
        emptied = {os.path.dirname(rel) for rel in gone} | set(folders[1:])
        for d in sorted(emptied, key=lambda d: -d.count(b"/")):   # children before parents
            while d and d not in index.directories():   # git leaves no empty untracked folder
                try:
                    os.rmdir(rootb + b"/" + d)
                except OSError:
                    break
                d = os.path.dirname(d)
        if not watching[0]:
            state.complete = None
        elif found is not None:
            _complete(state, index.key)


def _stat_of(found) -> Iterator[tuple[bytes, os.stat_result | None]]:
    for rel, entry in found:
        try:
            yield rel, entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            yield rel, None


def _reported(root: bytes, index: IndexFile, state: _CheckoutState, is_ignored: Callable[[str], bool],
              watch: Callable[[bytes], None]):
    """(files to look at as (path, lstat), tracked paths now gone) from what the watch reported
    since the picture was complete; None when it was not, or when only a walk can tell (an ignore
    file changed, a folder became a repository, the checkout's own folder moved)."""
    if state.watch is None or state.complete != index.key or state.verified != index.key:
        return None
    if _drain(state, index).overflow:
        return None
    paths, dirs = set(state.events), set(state.event_dirs)
    if b"" in dirs or any(_needs_walk(p) for p in paths | dirs):
        return None
    for d in dirs:
        paths.update(index.under(d))
    files: dict[bytes, os.stat_result | None] = {}
    missing: set[bytes] = set()
    walk_from: set[bytes] = set()
    for p in paths | dirs:
        full = root + b"/" + p
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            if p in index.raw:
                missing.add(p)
            continue
        if stat.S_ISDIR(st.st_mode):
            if p in index.raw:
                missing.add(p)   # a file that became a folder
            if os.path.lexists(full + b"/.git"):
                return None
            if p in index.directories() or not is_ignored(p.decode(errors="surrogateescape") + "/"):
                walk_from.add(p)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            if p in index.raw or not is_ignored(p.decode(errors="surrogateescape")):
                files[p] = st
        elif p in index.raw:
            missing.add(p)
    tops = sorted(walk_from)
    for d in [d for i, d in enumerate(tops) if not any(d.startswith(t + b"/") for t in tops[:i])]:
        for rel, st in _stat_of(walk_checkout(root, index.raw, index.directories(), is_ignored, on_folder=watch,
                                              start=d)):
            files[rel] = st
    for p in index.raw.keys() & paths:   # a tracked path looked at and not found as a file is gone
        if p not in files:
            missing.add(p)
    return list(files.items()), missing


def _needs_walk(path: bytes) -> bool:
    parts = path.split(b"/")
    return b".git" in parts or parts[-1] == b".gitignore"


def _read_file(full: bytes) -> bytes:
    with open(full, "rb") as f:
        return f.read()


def _write_entry(store, full: bytes, p: bytes, mode: int, sha: bytes) -> bytes:
    """Write the blob `sha` at `full` (a new file, or a symlink) and return its packed index entry."""
    data = blob_data(store, sha)
    if stat.S_ISLNK(mode):
        os.symlink(data, full)
    else:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o777 if mode & 0o100 else 0o666)
        try:
            view = memoryview(data)
            while view:   # no file object: this runs for every file a checkout or a move writes
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    return pack_entry(p, os.lstat(full), bytes.fromhex(sha.decode()), _index_mode(mode))


def checkout_new(root: str, index_path: str, store: BaseObjectStore, tree: bytes) -> None:
    """Write every file of `tree` into an empty folder and an index listing them (a new
    worktree); an index already there stops it with OSError."""
    store = cached_store(store)
    rootb = os.fsencode(os.path.abspath(root))
    if os.path.exists(index_path):
        raise OSError(f"{index_path} exists: this checkout is not new")
    with _mutex, IndexLock(index_path) as lock:
        written: list[tuple[bytes, int, bytes]] = []
        _tree_diff(store, None, tree, b"", [], written)
        changed: dict[bytes, bytes] = {}
        made: set[bytes] = {b""}
        for p, mode, sha in written:
            d = os.path.dirname(p)
            if d not in made:
                os.makedirs(rootb + b"/" + d, exist_ok=True)
                while d not in made:
                    made.add(d)
                    d = os.path.dirname(d)
            changed[p] = _write_entry(store, rootb + b"/" + p, p, mode, sha)
        empty = IndexFile(index_path, (0, 0, 0, 0, b""), [], {}, b"", [0], (0, 0))
        index = write_index(lock, empty, set(), changed, tree)
        # Just written, every file is as the index says and nothing else is there: the watch starts
        # now, so the first check of this checkout reads the watch's news instead of hashing every
        # file again (all of them written within the index's second, "racy" to a stat comparison).
        state = _state(rootb)
        state.verified = state.complete = None
        state.refreshed, state.refreshed_for, state.judged_clean = {}, None, None
        if _watch_all(rootb, state, index):
            _complete(state, index.key)
