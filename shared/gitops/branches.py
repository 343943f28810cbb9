"""What a run needs to know of a repository before it starts: its branches, the branch its
own checkout is on, and whether that checkout holds a person's uncommitted changes."""

from __future__ import annotations

from pathlib import Path

from shared.gitops.checkout import is_clean
from shared.gitops.repo import main_worktree_branch, open_repo

CONVENTIONAL = ("main", "master", "trunk")


def local_branches(repo_path: Path | str) -> list[str]:
    with open_repo(repo_path) as repo:
        return sorted(ref[len(b"refs/heads/"):].decode() for ref in repo.refs.allkeys()
                      if ref.startswith(b"refs/heads/"))


def checked_out_branch(repo_path: Path | str) -> str | None:
    with open_repo(repo_path) as repo:
        ref = main_worktree_branch(repo)
    return ref[len(b"refs/heads/"):].decode() if ref and ref.startswith(b"refs/heads/") else None


def checkout_is_clean(repo_path: Path | str) -> bool:
    """The repository's own working tree matches its HEAD commit (untracked files do not count)."""
    with open_repo(repo_path) as repo:
        try:
            head = repo.head()
        except KeyError:
            return True
        return is_clean(repo, repo[head].tree)
