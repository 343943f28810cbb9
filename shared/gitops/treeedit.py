"""A tree with some paths changed, rebuilding only the subtrees on the way to them (a commit of
one new file costs its folders, not the whole tree)."""

from __future__ import annotations

import stat

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Tree

from shared.gitops.objects import new_tree, tree_entries

Edit = tuple[int, bytes] | None    # (mode, hex sha) of the file now there, or None: removed
DIR_MODE = 0o040000


def apply_edits(store: BaseObjectStore, tree_id: bytes | None, edits: dict[bytes, Edit],
                new_objects: list[Tree]) -> bytes | None:
    """`tree_id` with `edits` (path -> entry) applied; None for a tree left empty. New trees are
    appended to `new_objects` (not written). A path replaced by a folder, or a folder by a file,
    arrives as the removal of one and the entries of the other."""
    entries = dict(tree_entries(store, tree_id)) if tree_id is not None else {}
    direct: dict[bytes, Edit] = {}
    nested: dict[bytes, dict[bytes, Edit]] = {}
    for path, entry in edits.items():
        head, sep, rest = path.partition(b"/")
        if sep:
            nested.setdefault(head, {})[rest] = entry
        else:
            direct[head] = entry
    for name, entry in direct.items():
        if entry is None and name in entries and not stat.S_ISDIR(entries[name][0]):
            del entries[name]
    for name, sub in nested.items():
        cur = entries.get(name)
        inner = apply_edits(store, cur[1] if cur is not None and stat.S_ISDIR(cur[0]) else None, sub, new_objects)
        if inner is not None:
            entries[name] = (DIR_MODE, inner)
        elif cur is not None and stat.S_ISDIR(cur[0]):
            del entries[name]
    for name, entry in direct.items():
        if entry is not None:
            entries[name] = entry
    if not entries:
        return None
    if tree_id is not None and entries == tree_entries(store, tree_id):
        return tree_id
    tree = new_tree(entries)
    new_objects.append(tree)
    return tree.id
