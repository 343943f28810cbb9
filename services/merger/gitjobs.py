"""The merger's git job, run in the process's git worker (shared.gitworker): module-level, with
arguments and results that pickle."""

from __future__ import annotations

from typing import Any

from shared.gitops import GitError, head_of, merge_branch
from shared.gitops.merge import MergeResult


def head_then_merge(repo_path: str, branch: str, merge: dict[str, Any] | None
                    ) -> tuple[str | None, MergeResult | None, str | None]:
    """The branch's head, then its merge (`merge_branch(repo_path, branch, **merge)`) if asked and
    the branch exists, in one job: (head, result, refusal)."""
    head = head_of(repo_path, branch)
    if head is None or merge is None:
        return head, None, None
    try:
        return head, merge_branch(repo_path, branch, **merge), None
    except GitError as exc:
        return head, None, str(exc)
