"""Trees serialized by shared.gitops.objects (one pass, no per-entry dulwich calls) are byte for
byte the trees dulwich (and git) write, and their entries read back the same."""

from __future__ import annotations

import hashlib
import random

from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Tree

from shared.gitops import objects
from shared.gitops.objects import new_tree, tree_entries, tree_raw

MODES = (0o100644, 0o100755, 0o120000, 0o040000, 0o160000)


def _entries(rng: random.Random) -> dict[bytes, tuple[int, bytes]]:
    names = [b"a", b"a.txt", b"a-b", b"a0", b"A", b"z", b"\xc3\xa9t\xc3\xa9", b"sp ace", b"x" * 40, b"-", b"_"]
    found = {}
    for _ in range(rng.randint(1, 40)):
        name = rng.choice(names) + (b"" if rng.random() < 0.5 else str(rng.randint(0, 30)).encode())
        found[name] = (rng.choice(MODES), hashlib.sha1(name + bytes([rng.randint(0, 255)])).hexdigest().encode())
    return found


def test_a_tree_is_serialized_as_dulwich_serializes_it():
    assert objects._FAST_TREES   # the one-pass path is the one in use with this dulwich
    rng = random.Random(17)
    for _ in range(300):
        entries = _entries(rng)
        theirs = Tree()
        for name, (mode, sha) in entries.items():
            theirs.add(name, mode, sha)
        ours = new_tree(dict(entries))
        assert tree_raw(entries) == theirs.as_raw_string()
        assert ours.id == theirs.id and ours.as_raw_string() == theirs.as_raw_string()
        assert ours.items() == theirs.items()


def test_entries_read_back_from_a_stored_tree_are_its_entries():
    rng = random.Random(5)
    store = MemoryObjectStore()
    for _ in range(50):
        entries = _entries(rng)
        tree = Tree()
        for name, (mode, sha) in entries.items():
            tree.add(name, mode, sha)
        store.add_object(Tree.from_string(tree.as_raw_string()))   # parsed, as a tree read from disk is
        assert tree_entries(store, tree.id) == entries


def test_blob_contents_are_kept_up_to_a_size_and_read_back_unchanged(monkeypatch):
    from dulwich.objects import Blob

    monkeypatch.setattr(objects, "_blobs", objects.OrderedDict())
    monkeypatch.setattr(objects, "_blob_bytes", 0)
    monkeypatch.setattr(objects, "_BLOB_BYTES", 100)
    monkeypatch.setattr(objects, "_BLOB_MAX", 40)
    store = MemoryObjectStore()
    blobs = [Blob.from_string(b"%d" % i * 30) for i in range(1, 6)] + [Blob.from_string(b"x" * 50)]
    for b in blobs:
        store.add_object(b)
    for b in blobs + blobs:
        assert objects.blob_data(store, b.id) == b.data
    assert blobs[-1].id not in objects._blobs                      # larger than _BLOB_MAX: read each time
    assert sum(map(len, objects._blobs.values())) == objects._blob_bytes <= 100   # the oldest went first
    assert list(objects._blobs) == [b.id for b in blobs[2:5]]
