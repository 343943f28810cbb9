"""The executor's git jobs, run in the process's git worker (shared.gitworker): module-level, with
arguments and results that pickle."""

from __future__ import annotations

from typing import Any

from shared.gitops import Worktree, WorktreeManager, head_of
from shared.gitops.checkout import tracked_files
from shared.gitops.worktrees import commit_worktree
from services.executor.agent.prompt import repo_map


def prepare(working_copy: str, target_branch: str, setup: dict[str, Any], name: str, branch: str,
            update_from_target: bool, with_map: bool) -> tuple[Worktree, str | None]:
    """The attempt's worktree made (or reused) on its branch, and its repository map when asked (it
    reads the clean worktree's index; a resolution's map is of a tree mid-merge, made later)."""
    wt = WorktreeManager(working_copy, target_branch=target_branch, **setup).acquire(
        name, branch, update_from_target=update_from_target)
    return wt, repo_map(wt.path, tracked=tracked_files(wt.path)) if with_map else None


def commit(path: str, message: str, branch: str = "", *, head_if_nothing: bool = False) -> str:
    """Everything in the worktree committed on its branch: the commit, or "" when nothing changed
    (the branch's head instead with `head_if_nothing`)."""
    made = commit_worktree(path, message)
    if made is None and head_if_nothing:
        return head_of(path, branch) or ""
    return made or ""
