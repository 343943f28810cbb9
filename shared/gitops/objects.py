"""Object reads for a long-running merger: parsed commits and trees stay in memory across merges,
and new objects are written loose, as git writes them.

An object's id is the hash of its content, so a cached commit or tree can never be stale. The
cache saves dulwich's lookup path, which searches every pack index, rescans the pack folder on
a miss and only then reads a loose object; a merger reads the same commits (merge-base walks)
and trees (the unchanged parts of `main`) on every merge. Writing the merge's few objects loose
instead of as a pack per merge keeps the number of packs (each one searched on every miss)
from growing with every merge.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Commit, ShaFile, Tree
from dulwich.repo import Repo

from shared.gitops.locks import OBJECT_LOCK_STALE_S, retry_locked

MAX_CACHED = 20_000  # commits and trees; a tree of a 100-file folder is a few KB
_cache: OrderedDict[tuple[str, bytes], ShaFile] = OrderedDict()


def _remember(key: tuple[str, bytes], obj: ShaFile) -> None:
    _cache[key] = obj
    if len(_cache) > MAX_CACHED:
        _cache.popitem(last=False)


def write_object(store: BaseObjectStore, obj: ShaFile, *, wait_s: float = 10.0) -> None:
    """store.add_object, safe when another process writes the same object at the same moment
    (agents in parallel worktrees often create identical blobs): the other writer's content is
    the same by definition, so wait for its file instead of failing on its lock."""
    retry_locked(lambda: store.add_object(obj), stale_after_s=OBJECT_LOCK_STALE_S, wait_s=wait_s,
                 satisfied=lambda _: None)


class CachedStore:
    """An object store that keeps the commits and trees it reads or writes (read-only use of
    the returned objects: they are shared). Everything else goes to the wrapped store."""

    def __init__(self, store: BaseObjectStore):
        self._store = store
        self._key = str(getattr(store, "path", id(store)))
        self._loose = getattr(store, "_get_loose_object", None)

    def __getitem__(self, sha: bytes) -> ShaFile:
        key = (self._key, sha)
        obj = _cache.get(key)
        if obj is not None:
            _cache.move_to_end(key)
            return obj
        obj = (self._loose(sha) if self._loose is not None and len(sha) == 40 else None) or self._store[sha]
        if isinstance(obj, (Commit, Tree)):
            _remember(key, obj)
        return obj

    def __contains__(self, sha: bytes) -> bool:
        return (self._key, sha) in _cache or sha in self._store

    def add_object(self, obj: ShaFile) -> None:
        write_object(self._store, obj)
        if isinstance(obj, (Commit, Tree)):
            _remember((self._key, obj.id), obj)

    def add_objects(self, objects: Iterable[tuple[ShaFile, Any]], progress: Any = None) -> None:
        """Loose, one file per object, like git's own merge (see the module docstring)."""
        for obj, _ in objects:
            self.add_object(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


_ENTRIES_CACHED = 64   # trees as dicts; a 1,000-file folder's dict is a few hundred KB
_entries: OrderedDict[bytes, dict[bytes, tuple[int, bytes]]] = OrderedDict()
_entries_lock = threading.Lock()


def tree_entries(store: BaseObjectStore, tree_id: bytes) -> dict[bytes, tuple[int, bytes]]:
    """name -> (mode, hex sha) of one tree (read-only: shared). A tree's id is its content, so two
    trees are diffed by the symmetric difference of their items, which runs in C: a folder of a
    thousand files costs its changed entries in Python, not its size."""
    with _entries_lock:
        found = _entries.get(tree_id)
        if found is not None:
            _entries.move_to_end(tree_id)
            return found
    found = {item.path: (item.mode, item.sha) for item in store[tree_id].iteritems()}
    with _entries_lock:
        _entries[tree_id] = found
        while len(_entries) > _ENTRIES_CACHED:
            _entries.popitem(last=False)
    return found


def changed_names(a: dict[bytes, tuple[int, bytes]], b: dict[bytes, tuple[int, bytes]]) -> set[bytes]:
    """Names whose entry differs between two tree_entries dicts."""
    return {name for name, _ in a.items() ^ b.items()}


def cached_store(store: BaseObjectStore | CachedStore) -> CachedStore:
    return store if isinstance(store, CachedStore) else CachedStore(store)


def cached(repo: Repo) -> Repo:
    """`repo` reading through the cache (repo[sha] and repo.object_store alike)."""
    repo.object_store = cached_store(repo.object_store)  # type: ignore[assignment]
    return repo
