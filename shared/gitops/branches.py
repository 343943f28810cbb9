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


def set_aside(repo_path: Path | str, branch: str, *, onto: str, keep_ref: str) -> tuple[str, str]:
    """Point `branch` at `onto`'s tip, keeping its old head reachable at `keep_ref` (a person's
    rerun of a conflicted task starts over on the target). Once `keep_ref` exists the branch was
    set aside already and is left alone, so a repeat changes nothing. Returns (old head, new head)."""
    from shared.gitops.errors import GitError
    from shared.gitops.refwrite import add_ref, set_ref
    from shared.gitops.repo import branch_ref, read_ref, require_branch

    with open_repo(repo_path) as repo:
        kept = repo.refs[keep_ref.encode()] if keep_ref.encode() in repo.refs else None
        old = require_branch(repo, branch)
        tip = require_branch(repo, onto)
        if kept is not None and old != kept:  # set aside before (the new attempt may have committed since)
            return kept.decode(), old.decode()
        if kept is None and not add_ref(repo, keep_ref.encode(), old):
            raise GitError(f"{keep_ref} appeared while {branch} was being set aside; retry")
        if not set_ref(repo, branch_ref(branch), old, tip):
            raise GitError(f"{branch} moved while it was being set aside (it is now {read_ref(repo, branch)!r}); retry")
        return old.decode(), tip.decode()
