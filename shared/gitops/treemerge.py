"""Three-way merge of trees on the object store, matching git's merge-ort for clean
results: per-path rules, rename handling, content merges, file/directory and
directory-rename conflicts. Nothing is written unless the caller asks for the tree."""

from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass, field

from dulwich.object_store import BaseObjectStore, tree_lookup_path
from dulwich.objects import S_ISGITLINK, Blob

from shared.gitops.objects import changed_names, new_tree, tree_entries
from shared.gitops.renames import detect_renames
from shared.gitops.linemerge import merge_lines
from shared.gitops.xdiff import is_binary

Entry = tuple[int, bytes]
DIR_MODE = 0o040000


def _p(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _side_changes(store: BaseObjectStore, base: bytes | None, side: bytes) -> dict[str, tuple[Entry | None, Entry | None]]:
    """path -> (base entry, side entry) for every file that differs, with subtrees compared by id."""
    out: dict[str, tuple[Entry | None, Entry | None]] = {}
    _diff_files(store, base, side, b"", out)
    return out


def _diff_files(store: BaseObjectStore, a_id: bytes | None, b_id: bytes | None, prefix: bytes,
                out: dict[str, tuple[Entry | None, Entry | None]]) -> None:
    if a_id == b_id:
        return
    a = tree_entries(store, a_id) if a_id is not None else {}
    b = tree_entries(store, b_id) if b_id is not None else {}
    for name in changed_names(a, b):
        was, now = a.get(name), b.get(name)
        path = prefix + name
        was_dir = was is not None and stat.S_ISDIR(was[0])
        now_dir = now is not None and stat.S_ISDIR(now[0])
        if was_dir or now_dir:
            _diff_files(store, was[1] if was_dir else None, now[1] if now_dir else None, path + b"/", out)
        old = None if was is None or was_dir else was
        new = None if now is None or now_dir else now
        if old is not None or new is not None:
            out[_p(path)] = (old, new)


def _ancestors(path: str):
    d = posixpath.dirname(path)
    while d:
        yield d
        d = posixpath.dirname(d)


@dataclass
class TreeMerge:
    tree: bytes | None                  # merged tree id (None when there are conflicts and not virtual)
    conflicts: list[dict] = field(default_factory=list)
    objects: list = field(default_factory=list)  # new blobs/trees to add when the result is used


class _Merger:
    def __init__(self, store: BaseObjectStore, base: bytes | None, ours: bytes, theirs: bytes,
                 labels: tuple[str, str], virtual: bool):
        self.store, self.base, self.ours, self.theirs = store, base, ours, theirs
        self.labels, self.virtual = labels, virtual
        self.conflicts: list[dict] = []
        self.new_objects: dict[bytes, object] = {}
        self.co = _side_changes(store, base, ours)
        self.ct = _side_changes(store, base, theirs)

    # -- entries on each side -------------------------------------------------
    def e_base(self, p: str) -> Entry | None:
        if p in self.co:
            return self.co[p][0]
        if p in self.ct:
            return self.ct[p][0]
        return self._lookup(self.base, p)

    def e_ours(self, p: str) -> Entry | None:
        return self.co[p][1] if p in self.co else self.e_base(p)

    def e_theirs(self, p: str) -> Entry | None:
        return self.ct[p][1] if p in self.ct else self.e_base(p)

    def _lookup(self, tree: bytes | None, p: str) -> Entry | None:
        if tree is None:
            return None
        try:
            mode, sha = tree_lookup_path(self.store.__getitem__, tree, _raw(p))
        except KeyError:
            return None
        return None if stat.S_ISDIR(mode) else (mode, sha)

    def _has_dir(self, tree: bytes | None, d: str) -> bool:
        if tree is None:
            return False
        try:
            mode, _ = tree_lookup_path(self.store.__getitem__, tree, _raw(d))
        except KeyError:
            return False
        return stat.S_ISDIR(mode)

    def conflict(self, path: str, kind: str, message: str, hunks: list[dict] | None = None, **extra) -> None:
        self.conflicts.append({"path": path, "kind": kind, "message": message, "hunks": hunks or [], **extra})

    # -- renames ----------------------------------------------------------------
    def _renames(self, mine: dict, other: dict, my_tree: bytes) -> tuple[dict[str, str], set[str]]:
        deleted = {p: o for p, (o, n) in mine.items() if n is None and o is not None}
        if not deleted:  # nothing moved away on this side (most merges, on the target's side): no rename
            return {}, set()
        added = {p: n for p, (o, n) in mine.items() if o is None and n is not None}
        relevant = {p for p in deleted if p in other}  # the other side changed what this side moved away
        # like merge-ort, a directory matters for directory renames only when the other side adds a file
        # directly inside it (the directory existed before, and this side removed it)
        my_del_dirs = {a for p in deleted for a in _ancestors(p)}
        parents = {posixpath.dirname(p) for p, (o, n) in other.items() if o is None and n is not None}
        removed_dirs = {d for d in parents & my_del_dirs if self._has_dir(self.base, d) and not self._has_dir(my_tree, d)}
        removed_dirs |= {a for d in removed_dirs for a in _ancestors(d + "/x") if not self._has_dir(my_tree, a)}
        relevant |= {p for p in deleted if posixpath.dirname(p) in removed_dirs}
        renames = detect_renames(deleted, added, relevant, lambda sha: self.store[sha].data)
        return renames, removed_dirs

    @staticmethod
    def _renamed_dirs(renames: dict[str, str], removed_dirs: set[str]) -> set[str]:
        """Removed directories whose files went elsewhere (git's directory rename counting)."""
        found = set()
        for src, dst in renames.items():
            sd, dd = posixpath.dirname(src), posixpath.dirname(dst)
            while sd and sd != dd:
                if sd in removed_dirs:
                    found.add(sd)
                if not dd or posixpath.basename(sd) != posixpath.basename(dd):
                    break
                sd, dd = posixpath.dirname(sd), posixpath.dirname(dd)
        return found

    # -- per-path merge -----------------------------------------------------------
    def merge_entry(self, path: str, b: Entry | None, o: Entry, t: Entry) -> Entry | None:
        if o == t:
            return o
        if b == o:
            return t
        if b == t:
            return o
        if stat.S_IFMT(o[0]) != stat.S_IFMT(t[0]):
            self.conflict(path, "type", f"{path}: changed to different kinds of file on the two sides")
            return o
        if S_ISGITLINK(o[0]):
            self.conflict(path, "submodule", f"{path}: submodule moved to different commits on the two sides")
            return o
        if stat.S_ISLNK(o[0]):
            self.conflict(path, "symlink", f"{path}: symlink changed differently on the two sides")
            return o
        mode = o[0] if o[0] == t[0] else (t[0] if b and o[0] == b[0] else (o[0] if b and t[0] == b[0] else None))
        if mode is None:
            self.conflict(path, "mode", f"{path}: file mode changed differently on the two sides")
            return o
        if o[1] == t[1] or (b and b[1] == t[1]):
            return (mode, o[1])
        if b and b[1] == o[1]:
            return (mode, t[1])
        base_data = self.store[b[1]].data if b else b""
        ours_data, theirs_data = self.store[o[1]].data, self.store[t[1]].data
        if is_binary(base_data) or is_binary(ours_data) or is_binary(theirs_data):
            self.conflict(path, "binary", f"{path}: binary file changed on both sides")
            return o
        merged = merge_lines(base_data, ours_data, theirs_data, self.labels)
        if merged.conflicts:
            self.conflict(path, "content", f"{path}: both sides changed the same lines", merged.conflicts)
            if not self.virtual:
                return o
        blob = Blob.from_string(merged.content)
        self.new_objects[blob.id] = blob
        return (mode, blob.id)

    def run(self) -> TreeMerge:
        ren_o, removed_o = self._renames(self.co, self.ct, self.ours)
        ren_t, removed_t = self._renames(self.ct, self.co, self.theirs)
        edits: dict[str, Entry | None] = {}
        handled: set[str] = set()
        for src in sorted(set(ren_o) | set(ren_t)):
            self._merge_rename(src, ren_o.get(src), ren_t.get(src), edits, handled)
        for p in sorted((set(self.co) | set(self.ct)) - handled):
            b, o, t = self.e_base(p), self.e_ours(p), self.e_theirs(p)
            if o == t or b == t:
                continue
            if b == o:
                edits[p] = t
            elif b is None:
                self.conflict(p, "add/add", f"{p}: added with different contents on the two sides")
            elif o is None or t is None:
                gone = self.labels[0] if o is None else self.labels[1]
                self.conflict(p, "modify/delete", f"{p}: deleted in {gone} and modified on the other side")
            else:
                merged = self.merge_entry(p, b, o, t)
                if merged != o:
                    edits[p] = merged
        self._directory_rename_conflicts(ren_o, removed_o, self.ct, ren_t, self.labels[1])
        self._directory_rename_conflicts(ren_t, removed_t, self.co, ren_o, self.labels[0])
        tree = _TreeBuilder(self.store, self).build(self.ours, edits)
        if self.conflicts and not self.virtual:
            return TreeMerge(None, self.conflicts)
        return TreeMerge(tree, self.conflicts, list(self.new_objects.values()))

    def _merge_rename(self, src: str, do: str | None, dt: str | None, edits: dict, handled: set) -> None:
        b = self.e_base(src)
        handled.add(src)
        if do and dt:
            handled.update((do, dt))
            if do != dt:
                self.conflict(src, "rename/rename", f"{src}: renamed to {do} in {self.labels[0]} and to {dt} in {self.labels[1]}",
                              ours_path=do, theirs_path=dt)
                return
            edits[do] = self.merge_entry(do, b, self.e_ours(do), self.e_theirs(dt))
            return
        target = do or dt
        handled.add(target)
        if do:
            other = self.e_theirs(src)
            mine = self.e_ours(do)
        else:
            other = self.e_ours(src)
            mine = self.e_theirs(dt)
        if other is None:
            side = self.labels[0] if do else self.labels[1]
            self.conflict(target, "rename/delete", f"{src}: renamed to {target} in {side} and deleted on the other side",
                          old_path=src)
            return
        merged = self.merge_entry(target, b, mine, other) if do else self.merge_entry(target, b, other, mine)
        collide = self.e_theirs(target) if do else self.e_ours(target)
        if collide is not None and collide != merged:
            self.conflict(target, "rename/add", f"{target}: {src} was renamed here while the other side added a different file here",
                          old_path=src)
            return
        if dt:
            edits[src] = None
        edits[target] = merged

    def _directory_rename_conflicts(self, renames, removed_dirs, other_changes, other_renames, other_label) -> None:
        renamed_dirs = self._renamed_dirs(renames, removed_dirs)
        if not renamed_dirs:
            return
        new_paths = {p for p, (o, n) in other_changes.items() if o is None and n is not None}
        for p in sorted(new_paths):
            if posixpath.dirname(p) not in removed_dirs:
                continue  # a file in a directory that did not exist before follows no directory rename
            hit = next((d for d in _ancestors(p) if d in renamed_dirs), None)
            if hit:
                self.conflict(p, "directory-rename",
                              f"{p}: added in {other_label} inside {hit}/, which the other side renamed away; "
                              f"decide where the file belongs")


class _TreeBuilder:
    """Applies path edits to a tree, creating only the subtrees that change."""

    def __init__(self, store: BaseObjectStore, merger: _Merger):
        self.store, self.m = store, merger

    def build(self, tree_id: bytes | None, edits: dict[str, Entry | None], prefix: str = "") -> bytes | None:
        entries = dict(tree_entries(self.store, tree_id)) if tree_id is not None else {}
        direct: dict[bytes, Entry | None] = {}
        nested: dict[bytes, dict[str, Entry | None]] = {}
        for path, entry in edits.items():
            head, _, rest = path.partition("/")
            if rest:
                nested.setdefault(_raw(head), {})[rest] = entry
            else:
                direct[_raw(head)] = entry
        for name, entry in direct.items():
            if entry is None and name in entries and not stat.S_ISDIR(entries[name][0]):
                del entries[name]
        for name, sub_edits in nested.items():
            cur = entries.get(name)
            full = prefix + _p(name)
            if cur is not None and not stat.S_ISDIR(cur[0]):
                if any(e is not None for e in sub_edits.values()):
                    self.m.conflict(full, "file/directory", f"{full}: a file on one side, a directory on the other")
                continue
            sub = self.build(cur[1] if cur else None, sub_edits, full + "/")
            if sub is None:
                entries.pop(name, None)
            else:
                entries[name] = (DIR_MODE, sub)
        for name, entry in direct.items():
            if entry is None:
                continue
            cur = entries.get(name)
            if cur is not None and stat.S_ISDIR(cur[0]):
                full = prefix + _p(name)
                self.m.conflict(full, "file/directory", f"{full}: a file on one side, a directory on the other")
                continue
            entries[name] = entry
        if not entries:
            return None
        if tree_id is not None and entries == tree_entries(self.store, tree_id):
            return tree_id
        tree = new_tree(entries)
        self.m.new_objects[tree.id] = tree
        return tree.id


def merge_trees(store: BaseObjectStore, base: bytes | None, ours: bytes, theirs: bytes,
                labels: tuple[str, str] = ("ours", "theirs"), virtual: bool = False) -> TreeMerge:
    """Merge `theirs` into `ours` against `base` (tree ids). `virtual` keeps conflicted content
    (with markers) in the tree, for building a merge base out of several common ancestors."""
    if ours == theirs or base == theirs:
        return TreeMerge(ours)
    if base == ours:
        return TreeMerge(theirs)
    return _Merger(store, base, ours, theirs, labels, virtual).run()
