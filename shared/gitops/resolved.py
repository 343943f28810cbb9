"""A person's resolution of a conflicted task, written in the web UI: the target branch is merged
into the task's branch in memory, the person's content replaces every conflicting file, and the
result is committed on the branch as its merge commit (parents: the branch's head, the target's
tip), so merging the branch back is clean unless the target moved again. No worktree is touched.

A resolution is identified by a digest of its files, recorded as a trailer of its commit: asked
again (a redelivery, a crash after the commit), the same commit is found instead of a second one."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

from dulwich.objects import Blob, Tree

from shared.gitops.errors import GitError
from shared.gitops.refwrite import set_ref
from shared.gitops.merge import _base_tree, make_commit
from shared.gitops.repo import branch_ref, merge_bases, open_repo, require_branch
from shared.gitops.treemerge import merge_trees

TRAILER = "YokeFlow-Resolution"
MARKER = re.compile(r"^(<{7} |>{7} |={7}\r?$)", re.M)
FILE_MODE = 0o100644


class ResolutionRefused(GitError):
    """The files given do not resolve the conflict: `field` names the one at fault."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return h.hexdigest()[:32]


def check_files(conflicted: set[str], files: dict[str, str]) -> None:
    """Every conflicting file resolved, nothing else, and no conflict marker left."""
    for path in sorted(files):
        if path not in conflicted:
            raise ResolutionRefused(f"files.{path}: not a conflicting file of this merge (those are: "
                                    f"{', '.join(sorted(conflicted)) or 'none'})", f"files.{path}")
        if MARKER.search(files[path]):
            raise ResolutionRefused(f"files.{path}: still holds conflict markers (<<<<<<<, =======, >>>>>>>); "
                                    "keep the lines you want and delete the markers", f"files.{path}")
    missing = sorted(conflicted - set(files))
    if missing:
        raise ResolutionRefused(f"files: {', '.join(missing)} still conflict(s); give the resolved content of "
                                "every conflicting file", f"files.{missing[0]}")


def commit_resolution(repo_path: Path | str, branch: str, *, target: str, files: dict[str, str], expected_head: str,
                      author: str = "YokeFlow Merger <merger@yokeflow.dev>") -> str:
    """The merge commit of `target` into `branch` with `files` as the resolution; returns its id.
    `expected_head` is the branch head the person resolved against: a branch that moved since is
    refused, unless it moved to this very resolution (asked before)."""
    key = digest(files)
    with open_repo(repo_path) as repo:
        head = require_branch(repo, branch)
        if head.decode() != expected_head:
            commit = repo[head]
            if f"{TRAILER}: {key}".encode() in commit.message and commit.parents[:1] == [expected_head.encode()]:
                return head.decode()  # this resolution, committed before
            raise GitError(f"{branch} moved to {head.decode()[:12]} since the conflict was shown "
                           f"({expected_head[:12]}): reload it and resolve again")
        tip = require_branch(repo, target)
        base = _base_tree(repo, head, tip, merge_bases(repo, head, tip))
        merged = merge_trees(repo.object_store, base, repo[head].tree, repo[tip].tree, labels=(branch, target),
                             virtual=True)
        check_files({c["path"] for c in merged.conflicts}, files)
        repo.object_store.add_objects([(o, None) for o in merged.objects])
        tree = merged.tree
        for path, text in files.items():
            blob = Blob.from_string(text.encode())
            repo.object_store.add_object(blob)
            tree = _with_file(repo.object_store, tree, path.split("/"), blob.id)
        message = (f"Merge branch '{target}' into {branch}: conflicts resolved in the web UI\n\n"
                   f"Resolved: {', '.join(sorted(files))}\n{TRAILER}: {key}\n")
        commit = make_commit(repo, tree, [head, tip], message, author)
        if not set_ref(repo, branch_ref(branch), head, commit.id):
            raise GitError(f"{branch} moved while the resolution was being committed; reload it and resolve again")
        return commit.id.decode()


def _with_file(store, tree_id: bytes | None, parts: list[str], blob: bytes) -> bytes:
    """`tree_id` with the file at `parts` set to `blob` (subtrees rebuilt as needed)."""
    tree = Tree()
    if tree_id is not None:
        for item in store[tree_id].iteritems():
            tree.add(item.path, item.mode, item.sha)
    name = parts[0].encode()
    if len(parts) == 1:
        kept = tree[name][0] if name in tree and not stat.S_ISDIR(tree[name][0]) else FILE_MODE
        tree.add(name, kept, blob)  # an executable stays executable
    else:
        current = tree[name] if name in tree else None
        sub = current[1] if current and stat.S_ISDIR(current[0]) else None
        tree.add(name, stat.S_IFDIR, _with_file(store, sub, parts[1:], blob))
    store.add_object(tree)
    return tree.id
