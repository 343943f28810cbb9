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

import binascii
import stat
import threading
from collections import OrderedDict
from typing import Any, Iterable

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Commit, ShaFile, Tree
from dulwich.repo import Repo

from shared.gitops.locks import OBJECT_LOCK_STALE_S, retry_locked

MAX_CACHED = 20_000  # commits and trees; a tree of a 100-file folder is a few KB
_cache: OrderedDict[tuple[str, bytes], ShaFile] = OrderedDict()
_cache_lock = threading.Lock()   # the merger's and the executor's git threads read and write it at once


def _remember(key: tuple[str, bytes], obj: ShaFile) -> None:
    with _cache_lock:
        _cache[key] = obj
        if len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)


def _cached(key: tuple[str, bytes]) -> ShaFile | None:
    with _cache_lock:
        obj = _cache.get(key)
        if obj is not None:
            _cache.move_to_end(key)
        return obj


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
        obj = _cached(key)
        if obj is not None:
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


_BLOB_BYTES = 32 << 20    # contents of small blobs kept; a checkout writes each blob into every new worktree
_BLOB_MAX = 256 << 10
_blobs: OrderedDict[bytes, bytes] = OrderedDict()
_blob_bytes = 0
_blobs_lock = threading.Lock()


def blob_data(store: BaseObjectStore, sha: bytes) -> bytes:
    """A blob's content. Small ones stay in memory (by id, so never stale): a file merged into `main`
    is written into every worktree created or moved after it, and each read was an open, a read
    and an inflate of the loose object."""
    global _blob_bytes
    with _blobs_lock:
        data = _blobs.get(sha)
        if data is not None:
            _blobs.move_to_end(sha)
            return data
    data = store[sha].as_raw_string()
    if len(data) <= _BLOB_MAX:
        with _blobs_lock:
            if sha not in _blobs:
                _blobs[sha] = data
                _blob_bytes += len(data)
                while _blob_bytes > _BLOB_BYTES:
                    _, old = _blobs.popitem(last=False)
                    _blob_bytes -= len(old)
    return data


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
    tree = store[tree_id]
    found = dict(tree._entries) if _FAST_TREES else {item.path: (item.mode, item.sha) for item in tree.iteritems()}
    _remember_entries(tree_id, found)
    return found


def _remember_entries(tree_id: bytes, found: dict[bytes, tuple[int, bytes]]) -> None:
    with _entries_lock:
        _entries[tree_id] = found
        while len(_entries) > _ENTRIES_CACHED:
            _entries.popitem(last=False)


_MODE_PREFIX: dict[int, bytes] = {}


def tree_raw(entries: dict[bytes, tuple[int, bytes]]) -> bytes:
    """A tree object's content (without its header), as git writes it: entries sorted by name, a
    folder as if its name ended in "/", each `<octal mode> <name>\\0<20-byte sha>`."""
    names = sorted(entries)
    if any(stat.S_ISDIR(mode) for mode, _ in entries.values()):
        names.sort(key=lambda n: n + b"/" if stat.S_ISDIR(entries[n][0]) else n)
    prefix = _MODE_PREFIX
    for mode, _ in entries.values():
        if mode not in prefix:
            prefix[mode] = b"%04o " % mode
    unhex = binascii.unhexlify
    return b"".join([prefix[mode] + name + b"\0" + unhex(sha) for name in names for mode, sha in (entries[name],)])


def new_tree(entries: dict[bytes, tuple[int, bytes]]) -> Tree:
    """A Tree of `entries` (name -> (mode, hex sha); kept by the tree and the tree_entries cache:
    do not change it afterwards). Serialized in one pass by tree_raw: dulwich sorts with a Python
    key function and formats each entry on its own, ~1 ms for a folder of 1,000 files at every
    commit and merge."""
    tree = Tree()
    if _FAST_TREES:
        tree._entries = entries
        tree._chunked_text = [tree_raw(entries)]
        tree._needs_serialization = False
    else:
        for name, (mode, sha) in entries.items():
            tree.add(name, mode, sha)
    _remember_entries(tree.id, entries)
    return tree


def _fast_trees_work() -> bool:
    """dulwich's Tree keeps its entries and serialized text in the attributes new_tree sets (checked
    once against dulwich's own serialization: a dulwich that changed them gets the slow path)."""
    blob, folder = b"e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    sample = {b"b": (0o100755, blob), b"a": (0o040000, folder), b"a.txt": (0o100644, blob), b"l": (0o120000, blob)}
    try:
        ours, theirs = Tree(), Tree()
        ours._entries, ours._chunked_text, ours._needs_serialization = dict(sample), [tree_raw(sample)], False
        for name, (mode, sha) in sample.items():
            theirs.add(name, mode, sha)
        parsed = Tree.from_string(theirs.as_raw_string())
        return (ours.id == theirs.id and ours.as_raw_string() == theirs.as_raw_string()
                and dict(parsed._entries) == sample and parsed.items() == ours.items())
    except Exception:   # noqa: BLE001 - any change in dulwich's internals means: use its public API
        return False


_FAST_TREES = _fast_trees_work()


def changed_names(a: dict[bytes, tuple[int, bytes]], b: dict[bytes, tuple[int, bytes]]) -> set[bytes]:
    """Names whose entry differs between two tree_entries dicts."""
    return {name for name, _ in a.items() ^ b.items()}


def cached_store(store: BaseObjectStore | CachedStore) -> CachedStore:
    return store if isinstance(store, CachedStore) else CachedStore(store)


def cached(repo: Repo) -> Repo:
    """`repo` reading through the cache (repo[sha] and repo.object_store alike)."""
    repo.object_store = cached_store(repo.object_store)  # type: ignore[assignment]
    return repo
