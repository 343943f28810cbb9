"""git's version-2 index file read and written with `struct`, keeping each entry's raw bytes so
that a rewrite packs only the paths that changed. Anything this module does not understand
(versions 3/4, required extensions, unmerged or submodule entries) raises UnsupportedIndex
before a byte is written, and the caller uses dulwich instead."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import threading
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field

from dulwich.file import FileLocked
from dulwich.object_store import BaseObjectStore

from shared.gitops.locks import LockFile

_HEADER = struct.Struct(">4sII")
_STAT = struct.Struct(">10I")       # ctime s, ns, mtime s, ns, dev, ino, mode, uid, gid, size
_FLAGS = struct.Struct(">H")
_MODE = struct.Struct(">I")
_CACHE_SIZE = 64       # parsed indexes and flat trees: one per live worktree, as many agents as run at once
_M32 = 0xFFFFFFFF


class UnsupportedIndex(Exception):
    """An index this module will not rewrite; use dulwich's index code instead."""


IndexKey = tuple[int, int, int, int, bytes]   # inode, size, mtime ns, ctime ns, trailer checksum


@dataclass
class IndexFile:
    """A parsed index: sorted paths, raw entry bytes per path, and the tree it is known to match."""
    path: str
    key: IndexKey
    paths: list[bytes]
    raw: dict[bytes, bytes]
    entries: bytes                                  # every entry as on disk, header and extensions cut
    starts: list[int]                               # offset of paths[i] in entries, then len(entries)
    mtime: tuple[int, int]                          # the index file's own mtime, for racy entries
    matches_tree: bytes | None = None               # a tree id whose flat listing equals the entries
    _listing: dict[bytes, bytes] | None = field(default=None, repr=False)
    _dirs: frozenset[bytes] | None = field(default=None, repr=False)

    def listing(self) -> dict[bytes, bytes]:
        """path -> 4-byte mode + 20-byte sha, the form flat_tree() returns."""
        if self._listing is None:
            self._listing = {p: r[24:28] + r[40:60] for p, r in self.raw.items()}
        return self._listing

    def directories(self) -> frozenset[bytes]:
        """Every directory holding a tracked path (b"" is the root)."""
        if self._dirs is None:
            dirs = {b""}
            for p in self.paths:
                d = os.path.dirname(p)
                while d not in dirs:
                    dirs.add(d)
                    d = os.path.dirname(d)
            self._dirs = frozenset(dirs)
        return self._dirs

    def under(self, prefix: bytes) -> list[bytes]:
        """Tracked paths inside directory `prefix` (all of them for b"")."""
        if not prefix:
            return list(self.paths)
        lo = bisect_left(self.paths, prefix + b"/")
        hi = bisect_left(self.paths, prefix + b"0")   # "0" sorts right after "/"
        return self.paths[lo:hi]


_lock = threading.Lock()
_parsed: OrderedDict[str, IndexFile] = OrderedDict()
_flat: OrderedDict[bytes, dict[bytes, bytes]] = OrderedDict()


def _key_of(path: str, st: os.stat_result, trailer: bytes) -> IndexKey:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, trailer)


def _trailer(path: str, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 20)
        return f.read(20)


def read_index(path: str) -> IndexFile | None:
    """The index at `path` (None when there is none); reparsed only when its file changed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    with _lock:
        cached = _parsed.get(path)
    if cached is not None and cached.key[:4] == _key_of(path, st, b"")[:4] and st.st_size >= 32 \
            and _trailer(path, st.st_size) == cached.key[4]:
        return cached
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())   # the stat of the very file read, even if it is replaced meanwhile
        data = f.read()
    index = parse_index(path, data, st)
    with _lock:
        _parsed[path] = index
        _parsed.move_to_end(path)
        while len(_parsed) > _CACHE_SIZE:
            _parsed.popitem(last=False)
    return index


def parse_index(path: str, data: bytes, st: os.stat_result) -> IndexFile:
    if len(data) < 32:
        raise UnsupportedIndex(f"{path}: too short for an index")
    sig, version, count = _HEADER.unpack_from(data, 0)
    if sig != b"DIRC" or version != 2:
        raise UnsupportedIndex(f"{path}: index version {version} (only version 2 is rewritten here)")
    body, trailer = data[:-20], data[-20:]
    if trailer != b"\0" * 20 and hashlib.sha1(body).digest() != trailer:
        raise UnsupportedIndex(f"{path}: index checksum mismatch")
    paths: list[bytes] = []
    raw: dict[bytes, bytes] = {}
    starts: list[int] = []
    off = 12
    for _ in range(count):
        (flags,) = _FLAGS.unpack_from(data, off + 60)
        if flags & 0xF000:
            raise UnsupportedIndex(f"{path}: unmerged, assume-unchanged or extended entries")
        namelen = flags & 0xFFF
        if namelen == 0xFFF:
            namelen = data.index(b"\0", off + 62) - off - 62
        end = off + ((62 + namelen + 8) & ~7)
        name = data[off + 62:off + 62 + namelen]
        entry = data[off:end]
        if _MODE.unpack_from(entry, 24)[0] == 0o160000:
            raise UnsupportedIndex(f"{path}: submodule entry {name!r}")
        paths.append(name)
        raw[name] = entry
        starts.append(off - 12)
        off = end
    entries_end = off
    while off < len(body):   # extensions: optional ones (uppercase) are caches git rebuilds
        ext = data[off:off + 4]
        if not (65 <= ext[0] <= 90):
            raise UnsupportedIndex(f"{path}: required index extension {ext!r}")
        off += 8 + struct.unpack_from(">I", data, off + 4)[0]
    if len(raw) != len(paths) or any(a >= b for a, b in zip(paths, paths[1:])):
        raise UnsupportedIndex(f"{path}: entries are not sorted and unique")
    starts.append(entries_end - 12)
    return IndexFile(path, _key_of(path, st, trailer), paths, raw, data[12:entries_end], starts,
                     (st.st_mtime_ns // 1_000_000_000, st.st_mtime_ns % 1_000_000_000))


def _listing_mode(mode: int) -> int:
    if stat.S_ISLNK(mode):
        return 0o120000
    if stat.S_ISREG(mode):
        return 0o100755 if mode & 0o100 else 0o100644
    raise UnsupportedIndex(f"tree entry mode {mode:o}")


def flat_tree(store: BaseObjectStore, tree_id: bytes) -> dict[bytes, bytes]:
    """path -> 4-byte mode + 20-byte sha of every file in a tree (trees never change: cached by id)."""
    with _lock:
        found = _flat.get(tree_id)
    if found is not None:
        return found
    found = {}
    stack = [(b"", tree_id)]
    while stack:
        prefix, tid = stack.pop()
        for name, mode, sha in store[tid].iteritems():
            full = prefix + name
            if stat.S_ISDIR(mode):
                stack.append((full + b"/", sha))
            else:
                found[full] = _MODE.pack(_listing_mode(mode)) + bytes.fromhex(sha.decode())
    with _lock:
        _flat[tree_id] = found
        while len(_flat) > _CACHE_SIZE:
            _flat.popitem(last=False)
    return found


def index_matches_tree(store: BaseObjectStore, index: IndexFile, tree_id: bytes) -> bool:
    if index.matches_tree == tree_id:
        return True
    if index.listing() == flat_tree(store, tree_id):
        index.matches_tree = tree_id
        return True
    return False


def blob_id(data: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).digest()


def file_mode(st: os.stat_result) -> int:
    if stat.S_ISLNK(st.st_mode):
        return 0o120000
    return 0o100755 if st.st_mode & 0o100 else 0o100644


def stat_matches(entry: bytes, st: os.stat_result) -> bool:
    """git's ie_match_stat: times to the nanosecond, inode, owner, size and mode (not dev)."""
    cs, cn, ms, mn, _dev, ino, mode, uid, gid, size = _STAT.unpack_from(entry, 0)
    m, c = st.st_mtime_ns, st.st_ctime_ns
    return (ms == (m // 1_000_000_000) & _M32 and mn == m % 1_000_000_000
            and cs == (c // 1_000_000_000) & _M32 and cn == c % 1_000_000_000
            and ino == st.st_ino & _M32 and size == st.st_size & _M32
            and uid == st.st_uid & _M32 and gid == st.st_gid & _M32 and mode == file_mode(st))


def is_racy(entry: bytes, index_mtime: tuple[int, int]) -> bool:
    """Written in the same clock tick as the index (or later): its stat data cannot be trusted."""
    return _STAT.unpack_from(entry, 0)[2:4] >= index_mtime


def content_matches(entry: bytes, full: bytes, st: os.stat_result) -> bool:
    if file_mode(st) != _MODE.unpack_from(entry, 24)[0]:
        return False
    if stat.S_ISLNK(st.st_mode):
        data = os.readlink(full)
    else:
        with open(full, "rb") as f:
            data = f.read()
    return blob_id(data) == entry[40:60]


def pack_entry(name: bytes, st: os.stat_result, sha: bytes, mode: int) -> bytes:
    m, c = st.st_mtime_ns, st.st_ctime_ns
    head = _STAT.pack((c // 1_000_000_000) & _M32, c % 1_000_000_000, (m // 1_000_000_000) & _M32,
                      m % 1_000_000_000, st.st_dev & _M32, st.st_ino & _M32, mode,
                      st.st_uid & _M32, st.st_gid & _M32, st.st_size & _M32)
    entry = head + sha + _FLAGS.pack(min(len(name), 0xFFF)) + name
    return entry + b"\0" * (8 - len(entry) % 8)   # 1 to 8 NULs: the name is always terminated


def _splice(index: IndexFile, removed: set[bytes], changed: dict[bytes, bytes]):
    """New (paths, raw, entries, starts): unchanged runs are copied as slices, not entry by entry."""
    paths, starts, old = index.paths, index.starts, index.entries
    raw = dict(index.raw)
    pieces: list[bytes] = []
    new_paths: list[bytes] = []
    new_starts: list[int] = []
    done, delta = 0, 0      # entries copied so far; how far the rest moved
    for p in sorted(removed | changed.keys()):
        i = bisect_left(paths, p, done)
        pieces.append(old[starts[done]:starts[i]])
        new_paths += paths[done:i]
        new_starts += starts[done:i] if not delta else [s + delta for s in starts[done:i]]
        if p in changed:
            entry = raw[p] = changed[p]
            new_paths.append(p)
            new_starts.append(starts[i] + delta)
            pieces.append(entry)
            delta += len(entry)
        else:
            del raw[p]
        if i < len(paths) and paths[i] == p:
            delta -= starts[i + 1] - starts[i]
            i += 1
        done = i
    pieces.append(old[starts[done]:])
    new_paths += paths[done:]
    new_starts += [s + delta for s in starts[done:]]
    return new_paths, raw, b"".join(pieces), new_starts


class IndexLock(LockFile):
    """`index.lock` held as git holds it: taken before the index is read, renamed over it to commit.
    Held by someone else, it is refused at once with what to do (a checkout is not waited for)."""

    def __init__(self, index_path: str) -> None:
        try:
            super().__init__(index_path, 0o666)
        except FileLocked:
            raise OSError(f"{index_path}.lock exists: another git process is using this checkout; "
                          f"remove the file if no git command is running") from None

    def commit(self, data: bytes, *, fsync: bool = False) -> os.stat_result:
        super().commit(data, fsync=fsync)
        return os.stat(self.path)


def write_index(lock: IndexLock, index: IndexFile, removed: set[bytes], changed: dict[bytes, bytes],
                matches_tree: bytes | None) -> IndexFile:
    """Commit `index` minus `removed` paths with `changed` entries (packed by pack_entry) added or
    replaced through `lock`: sorted, version 2, no extensions (the cache-tree would be stale)."""
    paths, raw, entries, starts = _splice(index, removed, changed)
    body = _HEADER.pack(b"DIRC", 2, len(paths)) + entries
    trailer = hashlib.sha1(body).digest()
    st = lock.commit(body + trailer)
    written = IndexFile(index.path, _key_of(index.path, st, trailer), paths, raw, entries, starts,
                        (st.st_mtime_ns // 1_000_000_000, st.st_mtime_ns % 1_000_000_000), matches_tree)
    with _lock:
        _parsed[index.path] = written
        _parsed.move_to_end(index.path)
    return written
