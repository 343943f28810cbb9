"""A read-only look at the project's repository for the API: a task's diff against the target
branch (dulwich; the gateway never writes the repository)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from dulwich.diff_tree import tree_changes
from dulwich.patch import write_tree_diff

from shared.gitops.errors import GitError
from shared.gitops.repo import merge_bases, open_repo, resolve_commit

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
