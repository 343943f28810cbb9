"""The git layer (pure dulwich): branch names, worktrees for agents, in-memory merges.
Import it as `shared.git`."""

from shared.gitops.create import create_repository
from shared.gitops.errors import GitError
from shared.gitops.merge import MergeResult, merge_branch
from shared.gitops.names import branch_name, slugify
from shared.gitops.repo import head_of, is_ancestor
from shared.gitops.resolution import Resolution, abort_resolution, begin_resolution, unresolved
from shared.gitops.worktrees import Worktree, WorktreeManager

__all__ = [
    "GitError", "MergeResult", "Resolution", "Worktree", "WorktreeManager", "abort_resolution",
    "begin_resolution", "branch_name", "create_repository", "head_of", "is_ancestor", "merge_branch", "slugify",
    "unresolved",
]
