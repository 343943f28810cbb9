"""The git layer (pure dulwich): branch names, worktrees for agents, in-memory merges.
The one git layer: import it as `shared.gitops`."""

from shared.gitops.branches import checked_out_branch, checkout_is_clean, local_branches, set_aside
from shared.gitops.create import create_repository
from shared.gitops.errors import GitError
from shared.gitops.merge import MergeResult, merge_branch
from shared.gitops.names import branch_name, slugify
from shared.gitops.repo import head_of, is_ancestor
from shared.gitops.resolution import Resolution, abort_resolution, begin_resolution, unresolved
from shared.gitops.trailers import find_commit, trailers_of
from shared.gitops.worktrees import Worktree, WorktreeManager

__all__ = [
    "checked_out_branch", "checkout_is_clean", "local_branches", "find_commit", "trailers_of",
    "GitError", "MergeResult", "Resolution", "Worktree", "WorktreeManager", "abort_resolution",
    "begin_resolution", "branch_name", "create_repository", "head_of", "is_ancestor", "merge_branch", "set_aside",
    "slugify",
    "unresolved",
]
