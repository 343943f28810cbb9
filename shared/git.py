"""Public face of the git layer; the implementation lives in shared/gitops/."""

from shared.gitops import (  # noqa: F401
    GitError,
    MergeResult,
    Resolution,
    abort_resolution,
    begin_resolution,
    unresolved,
    create_repository,
    Worktree,
    WorktreeManager,
    branch_name,
    head_of,
    is_ancestor,
    merge_branch,
    slugify,
)
from shared.gitops.branches import checked_out_branch, checkout_is_clean, local_branches  # noqa: F401
from shared.gitops.trailers import find_commit, trailers_of  # noqa: F401

__all__ = [
    "GitError", "MergeResult", "Resolution", "Worktree", "WorktreeManager", "abort_resolution",
    "begin_resolution", "branch_name", "create_repository", "find_commit", "head_of", "is_ancestor", "merge_branch", "slugify",
    "trailers_of", "unresolved", "checked_out_branch", "checkout_is_clean", "local_branches",
]
