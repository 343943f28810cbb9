"""Conflict resolution inside a task's worktree: the target branch is merged into the task's
branch the way `git merge` leaves a conflicted checkout (markers in the files, MERGE_HEAD
recorded), someone (an agent or a person) edits the files, and the next commit of the
worktree is the merge commit. Afterwards the task's branch contains the target, so merging
it back is clean unless the target moved again."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.object_store import tree_lookup_path
from dulwich.repo import Repo

from shared.gitops.checkout import head_tree, reset_hard, switch_tree
from shared.gitops.errors import GitError
from shared.gitops.linemerge import merge_lines
from shared.gitops.merge import _base_tree
from shared.gitops.repo import commit_is_ancestor, merge_bases, open_repo, require_branch
from shared.gitops.treemerge import merge_trees
from shared.gitops.xdiff import is_binary

MERGE_HEAD, MERGE_MSG = "MERGE_HEAD", "MERGE_MSG"
# a conflict marker line as merge_lines writes them (git's style: 7 characters, then a label)
_MARKER = re.compile(rb"^(?:<{7} |>{7} |={7}\r?$)", re.M)


@dataclass(frozen=True)
class Resolution:
    target_commit: str             # the target tip merged into the branch (MERGE_HEAD)
    conflicts: list[dict] = field(default_factory=list)  # as merge_trees reports them
    marked_files: list[str] = field(default_factory=list)  # files left holding conflict markers
    up_to_date: bool = False       # the branch already contains the target: nothing to resolve


def _state_file(wt: Repo, name: str) -> Path:
    return Path(wt.controldir()) / name


def merge_in_progress(worktree: Path | str) -> str | None:
    """The commit being merged into the worktree's branch (MERGE_HEAD), if a merge is under way."""
    with open_repo(worktree) as wt:
        path = _state_file(wt, MERGE_HEAD)
        return path.read_text().strip() if path.exists() else None


def clear_merge_state(wt: Repo) -> None:
    for name in (MERGE_HEAD, MERGE_MSG):
        _state_file(wt, name).unlink(missing_ok=True)


def begin_resolution(worktree: Path | str, target_branch: str, *, message: str | None = None) -> Resolution:
    """Merge `target_branch` into the branch checked out at `worktree`, leaving conflicts as
    markers in the files and MERGE_HEAD set. The worktree must be clean (at its branch head)."""
    with open_repo(worktree) as wt:
        head = wt.head()
        symref = wt.refs.get_symrefs().get(b"HEAD", b"HEAD")
        branch = symref.decode().removeprefix("refs/heads/")
        target = require_branch(wt, target_branch)
        if commit_is_ancestor(wt, target, head):
            return Resolution(target.decode(), up_to_date=True)
        base = _base_tree(wt, head, target, merge_bases(wt, head, target))
        ours, theirs = wt[head].tree, wt[target].tree
        tm = merge_trees(wt.object_store, base, ours, theirs, labels=(branch, target_branch), virtual=True)
        wt.object_store.add_objects([(o, None) for o in tm.objects])
        current = head_tree(wt)
        if tm.tree != current:
            switch_tree(wt, current, tm.tree)
        marked = [c["path"] for c in tm.conflicts if c["kind"] == "content"]
        marked += _two_way_markers(wt, ours, theirs, tm.conflicts, (branch, target_branch))
        _state_file(wt, MERGE_HEAD).write_text(target.decode() + "\n")
        _state_file(wt, MERGE_MSG).write_text(message or f"Merge branch '{target_branch}' into {branch}\n")
        return Resolution(target.decode(), tm.conflicts, sorted(set(marked)))


def _two_way_markers(wt: Repo, ours: bytes, theirs: bytes, conflicts: list[dict],
                     labels: tuple[str, str]) -> list[str]:
    """Both sides added a text file at the same path: show both versions with markers, as git does."""
    marked = []
    for c in conflicts:
        if c["kind"] != "add/add":
            continue
        raw = c["path"].encode("utf-8", "surrogateescape")
        try:
            a = wt[tree_lookup_path(wt.__getitem__, ours, raw)[1]].data
            b = wt[tree_lookup_path(wt.__getitem__, theirs, raw)[1]].data
        except KeyError:
            continue
        if is_binary(a) or is_binary(b):
            continue
        target = Path(wt.path) / c["path"]
        if target.is_symlink() or not target.is_file():
            continue
        target.write_bytes(merge_lines(b"", a, b, labels).content)
        marked.append(c["path"])
    return marked


def unresolved(worktree: Path | str, paths: list[str]) -> list[str]:
    """The paths among `paths` that still hold conflict markers."""
    left = []
    for rel in paths:
        path = Path(worktree) / rel
        if path.is_file() and not path.is_symlink() and _MARKER.search(path.read_bytes()):
            left.append(rel)
    return left


def abort_resolution(worktree: Path | str) -> None:
    """Drop a merge under way: files and index back at the branch head, MERGE_HEAD removed."""
    with open_repo(worktree) as wt:
        if not _state_file(wt, MERGE_HEAD).exists():
            raise GitError(f"no merge is under way in {worktree}")
        clear_merge_state(wt)
        reset_hard(wt, wt[wt.head()].tree)


def merge_parent(wt: Repo) -> bytes | None:
    """MERGE_HEAD as a commit id, checked, for the worktree's next commit."""
    path = _state_file(wt, MERGE_HEAD)
    if not path.exists():
        return None
    sha = path.read_text().strip().encode()
    try:
        wt[sha]
    except KeyError:
        raise GitError(f"{path} names {sha.decode()!r}, which is not a commit here; remove the file "
                       "to drop the merge") from None
    return sha
