"""A read-only look at the project's repository for the API: a task's diff against the target
branch, and a conflicted task's files (dulwich; the gateway never writes the repository)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from dulwich.diff_tree import tree_changes
from dulwich.patch import write_tree_diff

from dulwich.object_store import tree_lookup_path

from shared.gitops.errors import GitError
from shared.gitops.linemerge import merge_lines
from shared.gitops.repo import commit_is_ancestor, merge_bases, open_repo, resolve_commit
from shared.gitops.treemerge import merge_trees
from shared.gitops.xdiff import is_binary

MAX_DIFF_BYTES = 1 << 20  # a diff larger than this is cut, and says so


@dataclass(frozen=True)
class Diff:
    base: str
    head: str
    files: list[dict[str, str]]
    text: str
    truncated: bool


def task_diff(repo_path: str, target_branch: str, *, branch: str, commit: str, merge_commit: str) -> Diff:
    """What the task brings to the target branch. Merged: the merge commit against its first parent.
    Not merged: the branch (or the task's commit once the branch is gone) against its merge base
    with the target branch, as `git diff target...branch`. Raises GitError naming what is missing."""
    with open_repo(repo_path) as repo:
        if merge_commit:
            head = resolve_commit(repo, merge_commit)
            if head is None:
                raise GitError(f"merge commit {merge_commit[:12]} is not in {repo_path}")
            parents = repo[head].parents
            base = parents[0] if parents else None
        else:
            head = (resolve_commit(repo, branch) if branch else None) or (resolve_commit(repo, commit) if commit else None)
            if head is None:
                raise GitError(f"the task has no branch or commit in {repo_path} yet: it has not committed work")
            target = resolve_commit(repo, target_branch)
            if target is None:
                raise GitError(f"target branch {target_branch!r} does not exist in {repo_path}")
            bases = merge_bases(repo, target, head)
            base = bases[0] if bases else None
        old_tree = repo[base].tree if base else None
        new_tree = repo[head].tree
        files = []
        for change in tree_changes(repo.object_store, old_tree, new_tree):
            kind = change.type
            path = (change.new.path or change.old.path or b"").decode(errors="replace")
            files.append({"path": path, "change": kind})
        out = io.BytesIO()
        write_tree_diff(out, repo.object_store, old_tree, new_tree)
        raw = out.getvalue()
    truncated = len(raw) > MAX_DIFF_BYTES
    return Diff(base=base.decode() if base else "", head=head.decode(), files=files,
                text=raw[:MAX_DIFF_BYTES].decode(errors="replace"), truncated=truncated)


MAX_SIDE_BYTES = 256 * 1024  # each version of a conflicting file shown (larger: cut, and said so)


def _blob_at(repo, tree: bytes | None, path: str) -> bytes | None:
    if tree is None:
        return None
    try:
        _, sha = tree_lookup_path(repo.object_store.__getitem__, tree, path.encode())
        return repo[sha].data
    except KeyError:
        return None


def _text(data: bytes | None) -> str | None:
    return None if data is None else data[:MAX_SIDE_BYTES].decode(errors="replace")


def conflict_view(repo_path: str, target_branch: str, *, branch: str, attempt_commit: str,
                  recorded_paths: list[str]) -> dict:
    """A conflicted task as a person needs it to choose: the target and branch heads now, whether
    the branch would merge cleanly now (the target moved, or someone committed a resolution on the
    branch), and for each conflicting file the base, ours (the target's), theirs (the branch's)
    and the conflict-marked text, as `git merge` would leave it. Merges in memory; writes nothing."""
    with open_repo(repo_path) as repo:
        target = resolve_commit(repo, target_branch)
        if target is None:
            raise GitError(f"target branch {target_branch!r} does not exist in {repo_path}")
        head = resolve_commit(repo, branch) if branch else None
        if head is None:
            raise GitError(f"branch {branch!r} does not exist in {repo_path} any more: retry the merge or rerun the task")
        bases = merge_bases(repo, target, head)
        base_tree = repo[bases[0]].tree if bases else None
        merged = merge_trees(repo.object_store, base_tree, repo[target].tree, repo[head].tree,
                             labels=(target_branch, branch))
        now = sorted({c["path"] for c in merged.conflicts})
        files = []
        for path in now or recorded_paths:
            base, ours, theirs = (_blob_at(repo, t, path) for t in (base_tree, repo[target].tree, repo[head].tree))
            binary = any(b is not None and is_binary(b) for b in (base, ours, theirs))
            kind = next((c.get("kind", "content") for c in merged.conflicts if c["path"] == path), "content")
            marked = None
            if not binary and ours is not None and theirs is not None:
                marked = merge_lines(base or b"", ours, theirs, labels=(target_branch, branch)).content
            files.append({"path": path, "kind": kind, "binary": binary, "base": None if binary else _text(base),
                          "ours": None if binary else _text(ours), "theirs": None if binary else _text(theirs),
                          "marked": None if binary else _text(marked),
                          "truncated": any(b is not None and len(b) > MAX_SIDE_BYTES for b in (base, ours, theirs))})
        moved = bool(attempt_commit) and head.decode() != attempt_commit
        latest = repo[head]
        return {"target_head": target.decode(), "branch_head": head.decode(), "merge_base": bases[0].decode() if bases else "",
                "attempt_commit": attempt_commit, "branch_moved": moved,
                "branch_head_message": latest.message.decode(errors="replace").strip()[:500],
                "branch_contains_target": commit_is_ancestor(repo, target, head),
                "clean_now": not merged.conflicts, "files": files}
